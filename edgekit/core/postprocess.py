"""Turn network outputs into env actions, as SB3's ``BasePolicy.predict`` does.

Shared by host-side validation and the device runtime so that the two cannot
drift apart. Light: numpy only.

SB3 (``stable_baselines3/common/policies.py`` and ``distributions.py``)
post-processes the deterministic network output like this:

* Box action, ``squash_output=False`` (PPO, A2C): ``np.clip(a, low, high)``;
* Box action, ``squash_output=True`` (SAC, TD3, DDPG, gSDE+squash): the output
  lies in [-1, 1] and is unscaled to ``low + (a + 1) / 2 * (high - low)``;
* Discrete action: the mode of a categorical (argmax of logits) or the greedy
  Q-value action (argmax of Q-values);
* MultiDiscrete action: ``MultiCategoricalDistribution.mode()``, the argmax of
  each branch's slice of the logits (``nvec`` consecutive slices), as int64;
* MultiBinary action: ``BernoulliDistribution.mode()`` = ``round(sigmoid(logit))``
  as float32. ``round`` is half-to-even, so the tie ``logit == 0`` (probability
  exactly 0.5) gives 0: the action is 1 exactly when the logit is > 0. (float32's
  sigmoid also rounds logits in (0, 9e-8) to 0.5; an int8 logit is a multiple of
  its output step, far coarser, so on the device "> 0" is exact.)

Ties in an argmax go to the first index, as in numpy and torch.
"""

from __future__ import annotations

import numpy as np

from edgekit.core.spaces import BOX, DISCRETE, MULTI_BINARY, MULTI_DISCRETE, SpaceSpec

CLIP = "clip"
UNSCALE = "unscale"
ARGMAX = "argmax"
MULTI_ARGMAX = "multi_argmax"  # per-branch argmax (MultiDiscrete)
THRESHOLD = "threshold"  # logit > 0 (MultiBinary)
POSTPROCESS_KINDS = (CLIP, UNSCALE, ARGMAX, MULTI_ARGMAX, THRESHOLD)


def expected_kinds(space: SpaceSpec) -> tuple[str, ...]:
    """Which post-processing kinds make sense for an action space."""
    return {BOX: (CLIP, UNSCALE), DISCRETE: (ARGMAX,), MULTI_DISCRETE: (MULTI_ARGMAX,),
            MULTI_BINARY: (THRESHOLD,)}.get(space.kind, ())


def postprocess_problem(kind: str, space: SpaceSpec) -> str | None:
    """Why post-processing ``kind`` cannot produce actions of ``space``, or None. Unscaling maps [-1, 1]
    onto [low, high], so its bounds must be finite and their range finite in float32 (infinite bounds
    make every action NaN; SB3 refuses such a space for squashed policies). The manifest and the build
    both ask."""
    if kind not in expected_kinds(space):
        return f"post-processing {kind!r} does not fit {space.describe()}"
    if kind == UNSCALE:
        low = np.asarray(space.low, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            width = np.asarray(space.high, dtype=np.float32) - low
        if not (np.isfinite(low).all() and np.isfinite(width).all()):
            return (f"action space {space.describe()} has infinite bounds or a range beyond float32 "
                    f"(low {_first(space.low)}, high {_first(space.high)}), which unscaling squashed actions "
                    "cannot map [-1, 1] onto: every action would be infinite or NaN")
    return None


def _first(values: tuple[float, ...] | None) -> str:
    shown = ", ".join(f"{v:g}" for v in (values or ())[:3])
    return f"[{shown}{', ...' if len(values or ()) > 3 else ''}]"


def branches(space: SpaceSpec) -> list[tuple[int, int]]:
    """(start, stop) of each decision's slice of the outputs: one for Discrete, one per MultiDiscrete
    branch, one per MultiBinary output (a single logit)."""
    if space.kind == MULTI_DISCRETE:
        bounds = np.cumsum([0, *(space.nvec or ())])
        return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    if space.kind == MULTI_BINARY:
        return [(i, i + 1) for i in range(space.size)]
    return [(0, int(space.n or 0))]


class PostProcessor:
    """Maps a batch of network outputs ``(B, K)`` to a batch of actions.

    Bounds are precomputed once: the runtime calls this on every step.
    """

    def __init__(self, kind: str, action_space: SpaceSpec) -> None:
        problem = postprocess_problem(kind, action_space)
        if problem is not None:
            raise ValueError(problem)
        self.kind = kind
        self.space = action_space
        self._shape = action_space.shape
        if action_space.kind == BOX:
            self._low = action_space.low_array().reshape(-1).astype(np.float32)
            self._high = action_space.high_array().reshape(-1).astype(np.float32)
            self._half_range = (0.5 * (self._high - self._low)).astype(np.float32)
        self.start = action_space.start if action_space.kind == DISCRETE else 0
        self.branches = branches(action_space) if kind == MULTI_ARGMAX else []

    @property
    def elementwise(self) -> bool:
        """Each action value depends on one output alone (a per-output lookup table can replace it)."""
        return self.kind in (CLIP, UNSCALE, THRESHOLD)

    def __call__(self, outputs: np.ndarray) -> np.ndarray:
        """Post-process ``(B, K)`` float outputs into ``(B, *action_shape)`` actions."""
        if self.kind == ARGMAX:
            return np.argmax(outputs, axis=1).astype(np.int64) + self.start
        if self.kind == MULTI_ARGMAX:
            picks = [np.argmax(outputs[:, a:b], axis=1) for a, b in self.branches]
            return np.stack(picks, axis=1).astype(np.int64)
        if self.kind == THRESHOLD:
            return (outputs > 0).astype(np.float32).reshape((-1, *self._shape))
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
