"""Run a bundle on this machine with edgekit's device side and record what it computes.

Runs where edgekit-sb3[device] is installed (numpy and one TFLite interpreter, no
torch/TensorFlow/SB3): a Raspberry Pi, the emulated Raspberry Pi OS root of
``scripts/pi_emulated_check.py``, or a second venv on the host. It writes the
quantized inputs, the raw int8 outputs and the actions for the given
observations to an .npz, so that the build host can compare them with its own,
and prints one JSON line: the platform, the versions, and the heavy modules
found in ``sys.modules`` after importing ``edgekit.runtime`` and predicting
(import isolation).

    python pi_device_probe.py BUNDLE --obs OBS.npz --out RESULT.npz [--device cpu]

``OBS.npz`` holds an array ``observations``; without ``--obs`` the bundle's
held-out observations (``calibration.npz``) are used.

    python pi_device_probe.py --plan PLAN.json

runs several bundles in this one process, each followed by ``edgekit verify``
and ``edgekit bench`` through the CLI's own entry point (``edgekit.cli.main``),
and prints one JSON line per bundle. Under emulation every process pays
seconds to start and import numpy and the interpreter, so one process does
what four did. PLAN.json::

    {"device": "cpu", "interpreter": null, "bundles": [{"bundle": DIR, "obs": NPZ, "out": NPZ,
     "verify": ["--tolerance-steps", "3"], "bench": ["--iterations", "200"]}]}

(``verify``/``bench``: extra arguments; leave one out to skip that command.)
The heavy modules of each line are read after its commands ran.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from importlib import metadata
from typing import Any

HEAVY_MODULES = ("torch", "tensorflow", "onnx", "onnxruntime", "onnx2tf", "stable_baselines3", "gymnasium",
                 "keras", "tf_keras", "jax")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?")
    parser.add_argument("--obs", help="npz with an array 'observations' (default: the bundle's held-out set)")
    parser.add_argument("--out", help="npz to write the results to")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--interpreter", default=None)
    parser.add_argument("--plan", help="JSON plan of several bundles (see the module's docstring)")
    args = parser.parse_args(argv)
    if args.plan:
        with open(args.plan) as fh:
            plan = json.load(fh)
        for item in plan["bundles"]:
            report = probe(item["bundle"], item.get("obs"), item["out"], plan.get("device", "cpu"),
                           plan.get("interpreter"))
            for command in ("verify", "bench"):
                if item.get(command) is not None:
                    report[command] = cli(command, item["bundle"], *item[command])
            report["heavy_modules"] = heavy_modules()
            print(json.dumps(report), flush=True)
        return 0
    if not args.bundle or not args.out:
        parser.error("give BUNDLE and --out, or --plan")
    print(json.dumps(probe(args.bundle, args.obs, args.out, args.device, args.interpreter)))
    return 0


def heavy_modules() -> list[str]:
    return sorted(m for m in HEAVY_MODULES if m in sys.modules)


def cli(command: str, bundle: str, *args: str) -> dict[str, Any]:
    """``edgekit COMMAND BUNDLE --json ARGS`` through the console script's entry point, in this process."""
    from edgekit.cli import main as edgekit

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = edgekit([command, bundle, "--json", *args])
    return {"exit_code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:],
            "seconds": round(time.perf_counter() - start, 3)}


def probe(bundle: str, obs_file: str | None, out: str, device: str, interpreter: str | None) -> dict[str, Any]:
    """Predict every observation of ``obs_file`` (in batch and one at a time), save what was computed to
    ``out`` and return the platform, versions and timings."""
    start = time.perf_counter()
    import numpy as np

    from edgekit.runtime import EdgePolicy

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    policy = EdgePolicy.load(bundle, device=device, interpreter=interpreter)
    load_s = time.perf_counter() - start

    if obs_file:
        with np.load(obs_file, allow_pickle=False) as data:
            obs = np.asarray(data["observations"], dtype=np.float32)
    else:
        with np.load(f"{bundle}/calibration.npz", allow_pickle=False) as data:
            obs = np.asarray(data["held_out"], dtype=np.float32)
    obs = policy.observations_of(obs.reshape(len(obs), -1))  # stored flat; as the env returns them
    rows = [{k: v[i] for k, v in obs.items()} for i in range(len(next(iter(obs.values()))))] \
        if isinstance(obs, dict) else list(obs)

    start = time.perf_counter()
    quantized = policy.quantize_observations(obs)
    raw = np.stack([policy.invoke_int8(q).copy() for q in quantized])
    batch_actions = policy.predict(obs)
    single_actions = np.stack([policy.predict(row) for row in rows])  # the per-step fast path
    predict_s = time.perf_counter() - start
    np.savez(out, quantized=quantized, raw=raw, actions=batch_actions, single_actions=single_actions)

    # Everything a control loop touches: the servers and the benchmark too.
    from edgekit.runtime import bench, serve  # noqa: F401

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "bundle": bundle,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "interpreter": policy.backend.name,
        "interpreter_version": policy.backend.version,
        "edgekit": version("edgekit-sb3"),
        "device": policy.device,
        "fast_path": bool(policy.fast_path),
        "observations": len(rows),
        "single_equals_batch": bool(np.array_equal(single_actions, batch_actions)),
        "heavy_modules": heavy_modules(),
        "import_s": round(import_s, 3),
        "load_s": round(load_s, 3),
        "predict_s": round(predict_s, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
