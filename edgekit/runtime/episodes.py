"""Run a deployed policy in its Gymnasium env: returns and predict latency.

Needs gymnasium (nothing heavier); used by ``edgekit run --env``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.runtime.latency import latency_summary
from edgekit.runtime.policy import EdgePolicy


@dataclass(frozen=True)
class EpisodeResult:
    index: int
    seed: int
    episode_return: float
    length: int
    latency: dict[str, float]
    step_seconds: np.ndarray


def run_episodes(policy: EdgePolicy, env: Any, episodes: int, seed: int,
                 on_episode: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """Roll ``policy`` out for ``episodes`` episodes, seeding episode i with ``seed + i``."""
    results = []
    predict = policy.predict
    clock = time.perf_counter
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, steps, times = 0.0, 0, []
        done = False
        while not done:
            start = clock()
            action = predict(obs)
            times.append(clock() - start)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
        result = EpisodeResult(i, seed + i, total, steps, latency_summary(times), np.asarray(times))
        results.append(result)
        if on_episode:
            on_episode(result)
    return results


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    """Mean/std/min/max return and the pooled predict latency of all steps."""
    returns = np.array([r.episode_return for r in results])
    pooled = np.concatenate([r.step_seconds for r in results]) if results else np.array([])
    return {"episodes": len(results), "mean_return": float(returns.mean()), "std_return": float(returns.std()),
            "min_return": float(returns.min()), "max_return": float(returns.max()),
            "latency": latency_summary(pooled)}
