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
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib import metadata

HEAVY_MODULES = ("torch", "tensorflow", "onnx", "onnxruntime", "onnx2tf", "stable_baselines3", "gymnasium",
                 "keras", "tf_keras", "jax")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--obs", help="npz with an array 'observations' (default: the bundle's held-out set)")
    parser.add_argument("--out", required=True, help="npz to write the results to")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--interpreter", default=None)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import numpy as np

    from edgekit.runtime import EdgePolicy

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    policy = EdgePolicy.load(args.bundle, device=args.device, interpreter=args.interpreter)
    load_s = time.perf_counter() - start

    if args.obs:
        with np.load(args.obs, allow_pickle=False) as data:
            obs = np.asarray(data["observations"], dtype=np.float32)
    else:
        with np.load(f"{args.bundle}/calibration.npz", allow_pickle=False) as data:
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
    np.savez(args.out, quantized=quantized, raw=raw, actions=batch_actions, single_actions=single_actions)

    # Everything a control loop touches: the servers and the benchmark too.
    from edgekit.runtime import bench, serve  # noqa: F401

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    report = {
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
        "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules),
        "import_s": round(import_s, 3),
        "load_s": round(load_s, 3),
        "predict_s": round(predict_s, 3),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
