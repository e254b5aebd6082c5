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

runs a list of steps in this one process and prints one JSON line per step,
with the heavy modules in ``sys.modules`` after it. Under emulation every
process pays seconds to start and import numpy and the interpreter, so one
process does what one per command did. PLAN.json::

    {"steps": [
      {"distributions": true},                                  # installed distributions and versions
      {"cli": ["doctor", "--json"]},                             # edgekit ARGS via edgekit.cli.main
      {"predict": {"bundle": DIR, "obs": NPZ, "out": NPZ, "device": "cpu", "interpreter": null}},
      {"cli": ["verify", DIR, "--json"], "env": {"NAME": "value", "OTHER": null}},
      {"probe": {"model": TFLITE, "device": "cpu"}, "env": {...}}  # runtime.probe.probe_model, uncached
    ]}

``env`` is set around its step only (null: unset). A step that runs first
in the plan sees a fresh interpreter (doctor's import check). A step that
raises prints ``{"step": N, "error": TRACEBACK}`` and the next ones still run
(exit status 1 at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
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
    parser.add_argument("--plan", help="JSON plan of steps to run in this process (see the module's docstring)")
    args = parser.parse_args(argv)
    if args.plan:
        with open(args.plan) as fh:
            steps = json.load(fh)["steps"]
        failed = 0
        for number, step in enumerate(steps):
            try:
                with environment(step.get("env") or {}):
                    result = run_step(step)
            except Exception as exc:  # one step's failure is its line; the next steps still run
                import traceback

                result, failed = {"error": "".join(traceback.format_exception(exc))[-2000:]}, failed + 1
            print(json.dumps({"step": number, **result, "heavy_modules": heavy_modules()}), flush=True)
        return 1 if failed else 0
    if not args.bundle or not args.out:
        parser.error("give BUNDLE and --out, or --plan")
    print(json.dumps(probe(args.bundle, args.obs, args.out, args.device, args.interpreter)))
    return 0


def run_step(step: dict[str, Any]) -> dict[str, Any]:
    if "distributions" in step:
        return {"distributions": {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}}
    if "cli" in step:
        return cli(*step["cli"])
    if "predict" in step:
        p = step["predict"]
        return {"predict": probe(p["bundle"], p.get("obs"), p["out"], p.get("device", "cpu"), p.get("interpreter"))}
    if "probe" in step:
        from edgekit.runtime.probe import probe_model

        result = probe_model(step["probe"]["model"], device=step["probe"].get("device", "cpu"), use_cache=False)
        error = result.error()
        return {"probe": {**result.to_dict(), "error": type(error).__name__ if error else None,
                          "message": error.message if error else "", "hint": error.hint if error else ""}}
    raise ValueError(f"unknown step {step!r}")


@contextlib.contextmanager
def environment(changes: dict[str, str | None]) -> Iterator[None]:
    """``changes`` applied to os.environ for the duration (None unsets)."""
    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    saved = {name: os.environ.get(name) for name in changes}
    apply(changes)
    try:
        yield
    finally:
        apply(saved)


def heavy_modules() -> list[str]:
    return sorted(m for m in HEAVY_MODULES if m in sys.modules)


def cli(*args: str) -> dict[str, Any]:
    """``edgekit ARGS`` through the console script's entry point, in this process."""
    from edgekit.cli import main as edgekit

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = edgekit(list(args))
    return {"cli": list(args), "exit_code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:],
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
