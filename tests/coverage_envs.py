"""Tiny Gymnasium envs for every (observation kind, action kind) the support matrix names.

``SpacesEnv`` hides a target point z in [-1, 1]^2, drawn afresh each step; the
observation shows z in the chosen kind of space (a float or integer Box, a
Discrete cell, MultiDiscrete bins, MultiBinary signs, or a Dict of all of
them) and the reward is for an action that matches z (the point itself, a
bin, per-branch bins, per-bit signs). Episodes last ``HORIZON`` steps, so the
closed loop of a report is cheap. Importing this module registers one id per
combination under ``edgekit-test/`` (``env_id(observation, action)``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from coverage_env_ids import ACTIONS, OBSERVATIONS, env_id
from gymnasium import spaces

HORIZON = 16


def _bins(value: float, n: int) -> int:
    return int(np.clip((value + 1.0) / 2.0 * n, 0, n - 1))


def _observation_space(kind: str) -> spaces.Space:
    if kind == "box":
        return spaces.Box(-1.0, 1.0, (3,), np.float32)
    if kind == "int_box":
        return spaces.Box(0, 9, (2,), np.int64)
    if kind == "discrete":
        return spaces.Discrete(5)
    if kind == "multi_discrete":
        return spaces.MultiDiscrete([3, 4])
    if kind == "multi_binary":
        return spaces.MultiBinary(4)
    # keys deliberately not sorted: gymnasium sorts them, SB3 concatenates in that order
    return spaces.Dict({"pos": spaces.Box(-1.0, 1.0, (2,), np.float32), "cell": spaces.Discrete(3),
                        "bins": spaces.MultiDiscrete([2, 3]), "signs": spaces.MultiBinary(2)})


def _action_space(kind: str) -> spaces.Space:
    return {"box": spaces.Box(-1.0, 1.0, (2,), np.float32), "discrete": spaces.Discrete(3),
            "multi_discrete": spaces.MultiDiscrete([3, 2]), "multi_binary": spaces.MultiBinary(3)}[kind]


class SpacesEnv(gym.Env):
    """Show z in ``observation`` form; reward actions (``action`` form) that match it."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}

    def __init__(self, observation: str = "box", action: str = "box", render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.kind = observation
        self.action_kind = action
        self.observation_space = _observation_space(observation)
        self.action_space = _action_space(action)
        self._z = np.zeros(2)
        self._t = 0

    def _observe(self) -> Any:
        z0, z1 = self._z
        kind = self.kind
        if kind == "box":
            return np.array([z0, z1, z0 * z1], dtype=np.float32)
        if kind == "int_box":
            return np.array([_bins(z0, 10), _bins(z1, 10)], dtype=np.int64)
        if kind == "discrete":
            return _bins(z0, 5)
        if kind == "multi_discrete":
            return np.array([_bins(z0, 3), _bins(z1, 4)], dtype=np.int64)
        signs = np.array([z0 > 0, z1 > 0, z0 > z1, abs(z0) > 0.5], dtype=np.int8)
        if kind == "multi_binary":
            return signs
        return {"pos": np.array([z0, z1], dtype=np.float32), "cell": _bins(z1, 3),
                "bins": np.array([_bins(z0, 2), _bins(z1, 3)], dtype=np.int64), "signs": signs[:2]}

    def _reward(self, action: Any) -> float:
        z0, z1 = self._z
        a = np.asarray(action)
        if self.action_kind == "box":
            return -float(np.abs(np.clip(a, -1, 1) - self._z).sum())
        if self.action_kind == "discrete":
            return float(int(a) == _bins(z0, 3))
        if self.action_kind == "multi_discrete":
            return float(int(a[0]) == _bins(z0, 3)) + float(int(a[1]) == int(z1 > 0))
        return float(np.sum(np.round(a).astype(int) == np.array([z0 > 0, z1 > 0, z0 > z1], dtype=int)))

    def _draw(self) -> None:
        self._z = self.np_random.uniform(-1.0, 1.0, size=2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._draw()
        return self._observe(), {}

    def render(self) -> np.ndarray:
        """A tiny picture of z (SB3 asks for rgb_array frames only in its video tools)."""
        frame = np.zeros((8, 8, 3), dtype=np.uint8)
        frame[_bins(self._z[1], 8), _bins(self._z[0], 8)] = 255
        return frame

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        reward = self._reward(action)
        self._t += 1
        self._draw()
        return self._observe(), reward, False, self._t >= HORIZON, {}


for _observation in OBSERVATIONS:
    for _action in ACTIONS:
        if env_id(_observation, _action) not in gym.registry:
            gym.register(env_id(_observation, _action), entry_point=SpacesEnv,
                         kwargs={"observation": _observation, "action": _action})
