"""What the server answers for an observation it cannot use, and the counts it keeps.

A robot's control loop may prefer an action to an error: ``--on-bad-obs``

* ``error`` (default): ``{"error": "..."}``; the client decides;
* ``hold``: the last good action this client was answered (the neutral
  action before the first one), marked ``"substituted": "hold"``;
* ``zero``: the neutral action, marked ``"substituted": "zero"``.

The neutral action is the centre of a Box action space ((low + high) / 2,
0 clipped into the bounds on an unbounded side), the first action of a
Discrete one, the first action of every MultiDiscrete branch and all-zeros
for MultiBinary. The centre, not the policy's action for an all-zeros
observation: that action is whatever the network learnt for a state that may
never occur, while the centre is the middle of what the actuator accepts
(zero torque for a symmetric range). Each substitution is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgekit.core.errors import UsageError
from edgekit.core.spaces import DISCRETE, MULTI_BINARY, MULTI_DISCRETE, SpaceSpec

MODES = ("error", "hold", "zero")


def neutral_action(space: SpaceSpec) -> Any:
    """The action answered in place of a bad observation, as JSON-ready values."""
    if space.kind == DISCRETE:
        return int(space.start or 0)
    if space.kind == MULTI_DISCRETE:
        return [0] * len(space.nvec or ())
    if space.kind == MULTI_BINARY:
        return np.zeros(space.shape, dtype=np.float32).tolist()
    low = np.asarray(space.low, dtype=np.float64)
    high = np.asarray(space.high, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf on an unbounded side, not selected
        centre = np.where(np.isfinite(low) & np.isfinite(high), (low + high) / 2, np.clip(0.0, low, high))
    return centre.astype(np.float32).reshape(space.shape).tolist()


@dataclass
class Tally:
    """The counts of one server, shared by its clients' guards."""

    bad: int = 0  # bad requests (answered with an error or a substitute)
    saturated: int = 0  # good observations with at least one feature outside the int8 range


@dataclass
class BadObsGuard:
    """The server's policy for bad observations, one client's last good action, and the server's counts."""

    mode: str
    neutral: Any
    action_shape: tuple[int, ...]
    count_saturation: bool = False
    tally: Tally = field(default_factory=Tally)
    _last: Any = field(default=None, repr=False)

    @property
    def bad(self) -> int:
        return self.tally.bad

    @property
    def saturated(self) -> int:
        return self.tally.saturated

    @classmethod
    def for_space(cls, space: SpaceSpec, mode: str = "error", count_saturation: bool = False) -> BadObsGuard:
        if mode not in MODES:
            raise UsageError(f"unknown --on-bad-obs {mode!r}", hint=f"use one of {', '.join(MODES)}")
        return cls(mode=mode, neutral=neutral_action(space), action_shape=tuple(space.shape),
                   count_saturation=count_saturation)

    def accepted(self, action: np.ndarray) -> None:
        """Remember a single good action for ``hold``."""
        if self.mode == "hold" and action.shape == self.action_shape:
            self._last = action.tolist()

    def rejected(self, message: str) -> dict[str, Any]:
        """The response to a bad request; counts it."""
        self.tally.bad += 1
        if self.mode == "error":
            return {"error": message}
        action = self._last if self.mode == "hold" and self._last is not None else self.neutral
        return {"action": action, "substituted": self.mode, "reason": message}

    def forget(self) -> None:
        """A new client: never hold an action answered to someone else."""
        self._last = None

    def for_client(self) -> BadObsGuard:
        """The guard of one more client served at the same time: its own last action, the shared counts."""
        return replace(self, _last=None)

    def summary(self) -> str:
        verb = "answered with an error" if self.mode == "error" else f"answered with the {self.mode} action"
        text = f"{self.bad} bad observation{'s' if self.bad != 1 else ''} ({verb})"
        if self.count_saturation:
            text += f", {self.saturated} outside the int8 input range"
        return text
