"""Small image environments for the CnnPolicy cases (registered under ``edgekit-test/``).

``DotImage``: a bright square on a textured background; the agent moves it towards the
centre (reward: minus the distance). Cheap to step, uint8 observations that use the whole
0..255 range, and a policy whose decision depends on where the dot is, so a wrong pixel
layout or flatten order shows up as disagreement with SB3. Parameterised by the layout the
env returns (``HWC``: SB3 wraps it in ``VecTransposeImage``; ``CHW``: channel-first already),
the number of channels, the side (NatureCNN needs at least 36) and the action kind (Discrete,
Box, MultiDiscrete or MultiBinary).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

EPISODE_STEPS = 40


class DotImage(gym.Env):
    """Move a dot towards the centre of a ``side`` x ``side`` image with ``channels`` channels."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, layout: str = "HWC", channels: int = 1, side: int = 36, actions: str = "discrete",
                 render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        if layout not in ("HWC", "CHW"):
            raise ValueError(f"layout must be HWC or CHW, not {layout!r}")
        self.layout, self.channels, self.side = layout, channels, side
        shape = (side, side, channels) if layout == "HWC" else (channels, side, side)
        self.observation_space = spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        self.action_space = {"discrete": spaces.Discrete(4), "box": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
                             "multi_discrete": spaces.MultiDiscrete([3, 3]),  # per axis: -1, 0, +1
                             "multi_binary": spaces.MultiBinary(4)}[actions]  # up, down, left, right
        yy, xx = np.mgrid[0:side, 0:side]
        # a fixed texture per channel so that channels differ and pixel values span 0..255
        self._background = np.stack([((xx * (3 + c) + yy * (5 + 2 * c)) * 7 % 160).astype(np.uint8)
                                     for c in range(channels)], axis=-1)
        self._pos = np.zeros(2)
        self._t = 0

    def _obs(self) -> np.ndarray:
        image = self._background.copy()
        y, x = (int(v) for v in np.clip(np.rint(self._pos), 2, self.side - 3))
        for c in range(self.channels):
            image[y - 2:y + 3, x - 2:x + 3, c] = 255 - 20 * c
        image[0, 0, :] = 0  # one black pixel: the full 0..255 range in every frame
        return image if self.layout == "HWC" else np.ascontiguousarray(image.transpose(2, 0, 1))

    def render(self) -> np.ndarray:
        """The frame as an RGB array (SB3 asks for rgb_array when it makes the env)."""
        hwc = self._obs() if self.layout == "HWC" else self._obs().transpose(1, 2, 0)
        return np.repeat(hwc[..., :1], 3, axis=-1) if self.channels == 1 else hwc[..., :3]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(2, self.side - 3, size=2)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if isinstance(self.action_space, spaces.Discrete):
            move = [(0, -1), (0, 1), (-1, 0), (1, 0)][int(action)]
            delta = np.asarray(move, dtype=np.float64) * 2.0
        elif isinstance(self.action_space, spaces.MultiDiscrete):
            delta = (np.asarray(action, dtype=np.float64) - 1.0) * 2.0
        elif isinstance(self.action_space, spaces.MultiBinary):
            up, down, left, right = (float(v) for v in np.asarray(action).reshape(4))
            delta = np.array([down - up, right - left]) * 2.0
        else:
            delta = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1, 1) * 2.0
        self._pos = np.clip(self._pos + delta, 2, self.side - 3)
        self._t += 1
        centre = (self.side - 1) / 2.0
        reward = -float(np.linalg.norm(self._pos - centre)) / self.side
        return self._obs(), reward, False, self._t >= EPISODE_STEPS, {}


# id -> DotImage kwargs: HWC (SB3 transposes) and CHW envs, 1 and 3 channels, discrete and Box actions.
IMAGE_ENVS: dict[str, dict[str, Any]] = {
    "edgekit-test/DotHWC1-v0": {"layout": "HWC", "channels": 1, "side": 36},
    "edgekit-test/DotCHW3-v0": {"layout": "CHW", "channels": 3, "side": 36},
    "edgekit-test/DotHWC3x48-v0": {"layout": "HWC", "channels": 3, "side": 48},
    "edgekit-test/DotCHW1x48-v0": {"layout": "CHW", "channels": 1, "side": 48},
    "edgekit-test/DotHWC1Box-v0": {"layout": "HWC", "channels": 1, "side": 36, "actions": "box"},
    "edgekit-test/DotCHW3Box-v0": {"layout": "CHW", "channels": 3, "side": 36, "actions": "box"},
    "edgekit-test/DotHWC3x48Box-v0": {"layout": "HWC", "channels": 3, "side": 48, "actions": "box"},
    "edgekit-test/DotCHW3x64-v0": {"layout": "CHW", "channels": 3, "side": 64},
    "edgekit-test/DotHWC1MultiDiscrete-v0": {"layout": "HWC", "channels": 1, "side": 36, "actions": "multi_discrete"},
    "edgekit-test/DotCHW1MultiBinary-v0": {"layout": "CHW", "channels": 1, "side": 36, "actions": "multi_binary"},
}


def register() -> None:
    """Register every id once (idempotent)."""
    for env_id, kwargs in IMAGE_ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=DotImage, kwargs=kwargs)


register()
