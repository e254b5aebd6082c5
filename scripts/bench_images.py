"""Benchmark CnnPolicy bundles: build time, model size and ops, ``EdgePolicy.predict`` latency.

Trains a PPO CnnPolicy (SB3's default NatureCNN, 512 features) briefly on the test suite's image
envs (a 36x36 grey HWC env, which SB3 stores as 1x36x36, and a 3x64x64 channel-first env), builds
each with the default image rollouts (500 + 500) and times single-observation predict on the CPU.

    PYTHONPATH=. python scripts/bench_images.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

ENVS = ("edgekit-test/DotHWC1-v0", "edgekit-test/DotCHW3x64-v0")


def _train(env_id: str, path: Path, steps: int) -> Path:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    PPO("CnnPolicy", env_id, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(steps).save(path)
    return path


def _latency(policy, obs: np.ndarray, iterations: int) -> dict[str, float]:
    from edgekit.runtime.latency import latency_summary

    times = np.empty(iterations)
    predict, clock = policy.predict, time.perf_counter
    for i in range(iterations):
        row = obs[i % len(obs)]
        start = clock()
        predict(row)
        times[i] = clock() - start
    return latency_summary(times)


def _invoke_latency(policy, obs: np.ndarray, iterations: int) -> dict[str, float]:
    from edgekit.runtime.latency import latency_summary

    q = policy.quantize_observations(obs[:1])[0]
    times = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        policy.invoke_int8(q)
        times[i] = time.perf_counter() - start
    return latency_summary(times)


def bench(env_id: str, work: Path, steps: int, iterations: int) -> dict:
    import coverage_envs_images  # noqa: F401  (registers the envs)

    from edgekit.core.progress import Progress
    from edgekit.host.tflite_inspect import inspect_int8_model
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.runtime import EdgePolicy

    name = env_id.split("/")[-1]
    model = _train(env_id, work / f"{name}.zip", steps)
    start = time.perf_counter()
    result = build(BuildOptions(model=model, env_id=env_id, output=work / f"{name}.bundle",
                                report=ReportOptions(episodes=2)), Progress(quiet=True))
    wall = time.perf_counter() - start
    policy = EdgePolicy.load(result.bundle_dir, device="cpu")
    with np.load(result.bundle_dir / "calibration.npz") as data:
        obs = data["held_out"].reshape(-1, *policy.observation_shape)
    info = inspect_int8_model(result.bundle_dir / "model_int8.tflite")
    return {
        "env": env_id,
        "policy_observation": list(policy.manifest.observation_space.shape),
        "env_observation": list(policy.observation_shape),
        "model_input": list(info.input.shape),
        "ops": list(info.op_names),
        "model_bytes": (result.bundle_dir / "model_int8.tflite").stat().st_size,
        "build_s": round(wall, 2),
        "stage_s": {k: round(v, 2) for k, v in result.timings.items()},
        "validation": result.validation.metrics.get("discrete"),
        "invoke": _invoke_latency(policy, obs, iterations),
        "predict": _latency(policy, obs, iterations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256, help="PPO training steps per env")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-images-") as tmp:
        results = [bench(env_id, Path(tmp), args.steps, args.iterations) for env_id in ENVS]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['env']}: policy {r['policy_observation']} (env {r['env_observation']}), model input "
              f"{r['model_input']}, {r['model_bytes'] / 1024:.0f} KiB, ops {', '.join(r['ops'])}")
        print(f"  build {r['build_s']} s; set_tensor+invoke+get_tensor p50 {r['invoke']['p50_us']:.1f} us, "
              f"EdgePolicy.predict p50 {r['predict']['p50_us']:.1f} us, p99 {r['predict']['p99_us']:.1f} us")


if __name__ == "__main__":
    main()
