"""Latency statistics in microseconds (numpy only)."""

from __future__ import annotations

import numpy as np


def latency_summary(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """p50 / p99 / max / mean of a list of durations, in microseconds."""
    us = np.asarray(seconds, dtype=np.float64) * 1e6
    if us.size == 0:
        return {"n": 0, "p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "mean_us": 0.0}
    return {
        "n": int(us.size),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "mean_us": float(us.mean()),
    }
