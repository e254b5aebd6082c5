"""Closed loop: does the int8 policy still control the system?

Numeric error says how far the actions moved; only episodes say whether that
matters. The float policy, the int8 policy and a random policy play the same
seeded episodes (episode i starts from ``env.reset(seed=seed + i)``), and the
normalized score ``(R_int8 - R_random) / (R_float - R_random)`` puts the int8
return on the scale from "random" (0) to "as good as float" (1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# A cap for envs registered without a time limit, so a report always ends.
MAX_EPISODE_STEPS = 100_000

Actor = Callable[[Any], Any]


@dataclass(frozen=True)
class Returns:
    """Episode returns and lengths of one policy over the seeds."""

    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    capped: int = 0  # episodes stopped at MAX_EPISODE_STEPS

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def to_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lengths": list(self.lengths), "mean": self.mean, "std": self.std}


def play(actor: Actor, env: Any, seeds: list[int], on_reset: Callable[[int], None] | None = None) -> Returns:
    """One episode per seed; ``on_reset(seed)`` lets a random actor reseed its sampler."""
    returns, lengths, capped = [], [], 0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        if on_reset:
            on_reset(seed)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(actor(obs))
            total += float(reward)
            steps += 1
            done = bool(terminated or truncated)
            if steps >= MAX_EPISODE_STEPS and not done:
                capped, done = capped + 1, True
        returns.append(total)
        lengths.append(steps)
    return Returns(tuple(returns), tuple(lengths), capped)


def normalized_score(int8: float, reference: float, random: float) -> tuple[float | None, str]:
    """(R_int8 - R_random) / (R_float - R_random), or None when float is no better than random."""
    denominator = reference - random
    if abs(denominator) <= 1e-9 * max(1.0, abs(reference), abs(random)):
        return None, "the float and random policies have the same mean return: the normalized score is undefined"
    score = (int8 - random) / denominator
    if denominator < 0:
        return score, "the float policy does worse than random over these seeds: the score is not meaningful"
    return score, ""


def closed_loop(env: Any, env_id: str, episodes: int, seed: int, int8_actor: Actor,
                float_actor: Actor | None) -> dict[str, Any]:
    """Play float (if given), int8 and random policies over ``episodes`` seeds; the report section."""
    seeds = [seed + i for i in range(episodes)]
    reference = play(float_actor, env, seeds) if float_actor is not None else None
    int8 = play(int8_actor, env, seeds)
    random = play(lambda _obs: env.action_space.sample(), env, seeds, on_reset=env.action_space.seed)
    notes = []
    score = None
    if reference is None:
        notes.append("no --model: the float SB3 policy did not play, so there is no normalized score")
    else:
        score, note = normalized_score(int8.mean, reference.mean, random.mean)
        notes.append(note)
    capped = sum(r.capped for r in (reference, int8, random) if r is not None)
    if capped:
        notes.append(f"{capped} episodes were stopped after {MAX_EPISODE_STEPS} steps")
    return {
        "status": "ok",
        "env_id": env_id,
        "episodes": episodes,
        "seeds": seeds,
        "float": reference.to_dict() if reference is not None else None,
        "int8": int8.to_dict(),
        "random": random.to_dict(),
        "normalized_score": score,
        "note": "; ".join(n for n in notes if n),
    }


def skipped(reason: str) -> dict[str, Any]:
    """The closed-loop section when no episode was played."""
    return {"status": "skipped", "env_id": None, "episodes": 0, "seeds": [], "float": None, "int8": None,
            "random": None, "normalized_score": None, "note": reason}
