"""Latency of raw ``invoke()`` and of full ``predict`` on each available device.

Tiny MLPs can be faster on the CPU than across USB to an Edge TPU; this tells
which. Numpy and the interpreter only.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.files import verify_file
from edgekit.bundle.layout import CALIBRATION
from edgekit.core.errors import EdgekitError
from edgekit.runtime.latency import latency_summary
from edgekit.runtime.policy import EdgePolicy, EdgeTPUFallbackWarning


@dataclass(frozen=True)
class DeviceBench:
    device: str
    invoke: dict[str, float]
    predict: dict[str, float]


def bench_observations(policy: EdgePolicy, count: int) -> list[Any]:
    """Held-out observations from the bundle (checked), or zeros if it has none, one per call, as the
    env returns them."""
    name = CALIBRATION
    if name in policy.manifest.files:
        path = verify_file(policy.bundle_dir, policy.manifest, name)
        with np.load(path, allow_pickle=False) as data:
            obs = np.asarray(data["held_out"], dtype=policy.observation_dtype)  # images: uint8
        if len(obs):
            reps = -(-count // len(obs))
            return _rows(policy.observations_of(np.tile(obs, (reps, 1))[:count]), count)
    return _rows(policy.observations_of(np.zeros((count, policy.encoder.features), dtype=policy.observation_dtype)),
                 count)


def _rows(batch: Any, count: int) -> list[Any]:
    """A batch (an array, or a dict of arrays for a Dict space) as ``count`` single observations."""
    if isinstance(batch, dict):
        return [{key: value[i] for key, value in batch.items()} for i in range(count)]
    return list(batch)


def bench_policy(policy: EdgePolicy, iterations: int = 2000, warmup: int = 100) -> DeviceBench:
    """Time raw invoke (pre-quantized input) and full predict, one call per observation."""
    obs = bench_observations(policy, iterations)
    quantized = [policy.quantize_observations(row)[0] for row in obs]
    for i in range(min(warmup, iterations)):
        policy.predict(obs[i])
    clock = time.perf_counter
    invoke_times = np.empty(iterations)
    for i, q in enumerate(quantized):
        start = clock()
        policy.invoke_int8(q)
        invoke_times[i] = clock() - start
    predict_times = np.empty(iterations)
    predict = policy.predict
    for i in range(iterations):
        row = obs[i]
        start = clock()
        predict(row)
        predict_times[i] = clock() - start
    return DeviceBench(policy.device, latency_summary(invoke_times), latency_summary(predict_times))


def bench_devices(bundle_dir: Path, devices: list[str], iterations: int) -> tuple[list[DeviceBench], list[str]]:
    """Bench every device that opens; returns results and one note per device that did not (``auto`` benches
    what it opens, the CPU with a warning when no Edge TPU works)."""
    results, notes = [], []
    for device in devices:
        try:
            with warnings.catch_warnings():
                if device.strip().lower() != "auto":
                    warnings.simplefilter("error", EdgeTPUFallbackWarning)
                policy = EdgePolicy.load(bundle_dir, device=device)
        except (EdgekitError, EdgeTPUFallbackWarning) as exc:
            notes.append(f"{device}: {getattr(exc, 'message', str(exc))}")
            continue
        results.append(bench_policy(policy, iterations))
    return results, notes


def as_dict(results: list[DeviceBench]) -> list[dict[str, Any]]:
    return [{"device": r.device, "invoke": r.invoke, "predict": r.predict} for r in results]
