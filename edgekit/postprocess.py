"""Turn network outputs into env actions, as SB3's ``BasePolicy.predict`` does.

Shared by host-side validation and the device runtime so that the two cannot
drift apart. Light: numpy only.

SB3 (``stable_baselines3/common/policies.py``) post-processes the
deterministic network output like this:

* Box action, ``squash_output=False`` (PPO, A2C): ``np.clip(a, low, high)``;
* Box action, ``squash_output=True`` (SAC, TD3, DDPG, gSDE+squash): the output
  lies in [-1, 1] and is unscaled to ``low + (a + 1) / 2 * (high - low)``;
* Discrete action: the mode of a categorical (argmax of logits) or the greedy
  Q-value action (argmax of Q-values).
"""

from __future__ import annotations

import numpy as np

from edgekit.spaces import BOX, DISCRETE, SpaceSpec

CLIP = "clip"
UNSCALE = "unscale"
ARGMAX = "argmax"
POSTPROCESS_KINDS = (CLIP, UNSCALE, ARGMAX)


def expected_kinds(space: SpaceSpec) -> tuple[str, ...]:
    """Which post-processing kinds make sense for an action space."""
    return (CLIP, UNSCALE) if space.kind == BOX else (ARGMAX,)


class PostProcessor:
    """Maps a batch of network outputs ``(B, K)`` to a batch of actions.

    Bounds are precomputed once: the runtime calls this on every step.
    """

    def __init__(self, kind: str, action_space: SpaceSpec) -> None:
        if kind not in expected_kinds(action_space):
            raise ValueError(f"post-processing {kind!r} does not fit {action_space.describe()}")
        self.kind = kind
        self.space = action_space
        self._shape = action_space.shape
        if action_space.kind == BOX:
            self._low = action_space.low_array().reshape(-1).astype(np.float32)
            self._high = action_space.high_array().reshape(-1).astype(np.float32)
            self._half_range = (0.5 * (self._high - self._low)).astype(np.float32)
        self.start = action_space.start if action_space.kind == DISCRETE else 0

    def __call__(self, outputs: np.ndarray) -> np.ndarray:
        """Post-process ``(B, K)`` float outputs into ``(B, *action_shape)`` actions."""
        if self.kind == ARGMAX:
            return np.argmax(outputs, axis=1).astype(np.int64) + self.start
        if self.kind == CLIP:
            actions = np.clip(outputs, self._low, self._high)
        else:
            # The float tanh never leaves [-1, 1]; a dequantized int8 value can,
            # by part of a step, so clip first to keep actions inside the bounds.
            squashed = np.clip(outputs, -1.0, 1.0)
            actions = self._low + (squashed + 1.0) * self._half_range
        return actions.astype(np.float32, copy=False).reshape((-1, *self._shape))

    def one(self, output: np.ndarray) -> np.ndarray:
        """Post-process a single output vector ``(K,)`` into one action (0-d array if discrete)."""
        return np.asarray(self(output.reshape(1, -1))[0])
