"""Pass/fail thresholds of the quantization-error report, defined once for ``report`` and ``build``.

A threshold the user sets is *enforced*: failing it makes the command exit
with ``EXIT_THRESHOLD_FAILED`` after the report is written, so CI can gate on
it. A threshold left unset is compared with an advisory target and only shown,
so a report always says where the policy stands.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from edgekit.core.errors import UsageError

EXIT_THRESHOLD_FAILED = 3  # distinct from errors (1) and bad usage (2)

PASS, FAIL, NOT_APPLICABLE, UNDEFINED = "pass", "fail", "n/a", "undefined"


@dataclass(frozen=True)
class Thresholds:
    """Limits on the report's three headline figures; ``None`` means not enforced."""

    max_action_error: float | None = None  # mean |a_int8 - a_float| as a share of the action range (Box)
    min_agreement: float | None = None  # agreement on decisive held-out decisions (Discrete, Multi*)
    min_score: float | None = None  # closed-loop (R_int8 - R_random) / (R_float - R_random)

    def check(self) -> None:
        """Refuse values that cannot be meant (percentages instead of shares, NaN)."""
        for name, value in (("max-action-error", self.max_action_error), ("min-agreement", self.min_agreement),
                            ("min-score", self.min_score)):
            if value is not None and not math.isfinite(value):
                raise UsageError(f"--{name} must be a finite number")
        if self.max_action_error is not None and not 0.0 <= self.max_action_error <= 1.0:
            raise UsageError("--max-action-error is a share of the action range in [0, 1]",
                             hint="e.g. --max-action-error 0.02 for 2 % of the range")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError("--min-agreement is a share in [0, 1]", hint="e.g. --min-agreement 0.995 for 99.5 %")

    def to_dict(self) -> dict[str, float | None]:
        return {"max_action_error": self.max_action_error, "min_agreement": self.min_agreement,
                "min_score": self.min_score}


# Shown (not enforced) when the user sets no threshold; see fidelity-notes: decisive agreement
# >= 99.5 %, closed-loop score close to 1, mean action error of a few percent at most.
ADVISORY = Thresholds(max_action_error=0.02, min_agreement=0.995, min_score=0.95)


@dataclass(frozen=True)
class Check:
    """One threshold compared with the measured figure."""

    name: str
    metric: str
    comparison: str  # "<=" or ">="
    value: float | None
    threshold: float
    enforced: bool
    status: str  # pass | fail | n/a | undefined
    note: str = ""

    @property
    def failed(self) -> bool:
        """Failing an enforced threshold, or being unable to measure it, fails the run."""
        return self.enforced and self.status in (FAIL, UNDEFINED)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "comparison": self.comparison, "value": self.value,
                "threshold": self.threshold, "enforced": self.enforced, "status": self.status, "note": self.note}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The three threshold flags, for any command that writes a report."""
    parser.add_argument("--max-action-error", type=float, default=None, metavar="F",
                        help="fail (exit 3) if the mean action error exceeds F as a share of the action range "
                        f"(Box actions; advisory target {ADVISORY.max_action_error})")
    parser.add_argument("--min-agreement", type=float, default=None, metavar="F",
                        help="fail (exit 3) if agreement on decisive states (per branch for MultiDiscrete, "
                        "per bit for MultiBinary) is below F "
                        f"(Discrete, MultiDiscrete, MultiBinary actions; advisory target {ADVISORY.min_agreement})")
    parser.add_argument("--min-score", type=float, default=None, metavar="F",
                        help="fail (exit 3) if the normalized closed-loop score is below F (needs --model; "
                        f"advisory target {ADVISORY.min_score})")


def from_args(args: argparse.Namespace) -> Thresholds:
    """The thresholds given on the command line, checked."""
    thresholds = Thresholds(args.max_action_error, args.min_agreement, args.min_score)
    thresholds.check()
    return thresholds


def evaluate(thresholds: Thresholds, validation: dict[str, Any], closed_loop: dict[str, Any]) -> list[Check]:
    """Compare the report's figures with the thresholds (enforced) or the advisory targets."""
    checks = [_action_error(thresholds, validation), _agreement(thresholds, validation),
              _score(thresholds, closed_loop)]
    return checks


def _limit(given: float | None, advisory: float | None) -> tuple[float, bool]:
    return (given, True) if given is not None else (float(advisory or 0.0), False)


def _compare(value: float | None, threshold: float, comparison: str) -> str:
    if value is None:
        return UNDEFINED
    ok = value <= threshold if comparison == "<=" else value >= threshold
    return PASS if ok else FAIL


def _action_error(thresholds: Thresholds, validation: dict[str, Any]) -> Check:
    threshold, enforced = _limit(thresholds.max_action_error, ADVISORY.max_action_error)
    metric = "mean action error, share of the action range"
    continuous = validation.get("continuous")
    if continuous is None:
        return Check("max_action_error", metric, "<=", None, threshold, enforced, NOT_APPLICABLE,
                     "discrete actions: see min_agreement")
    value = continuous.get("mean_share_of_range")
    note = "" if value is not None else "the action space has no finite range"
    return Check("max_action_error", metric, "<=", value, threshold, enforced, _compare(value, threshold, "<="), note)


def _agreement(thresholds: Thresholds, validation: dict[str, Any]) -> Check:
    threshold, enforced = _limit(thresholds.min_agreement, ADVISORY.min_agreement)
    metric = "argmax agreement on decisive states"
    discrete = validation.get("discrete")
    if discrete is None:
        return Check("min_agreement", metric, ">=", None, threshold, enforced, NOT_APPLICABLE,
                     "continuous actions: see max_action_error")
    value, note = discrete.get("decisive_agreement"), ""
    if value is None:
        value, note = discrete.get("agreement"), "no decisive state among the held-out observations: all states"
    return Check("min_agreement", metric, ">=", value, threshold, enforced, _compare(value, threshold, ">="), note)


def _score(thresholds: Thresholds, closed_loop: dict[str, Any]) -> Check:
    threshold, enforced = _limit(thresholds.min_score, ADVISORY.min_score)
    metric = "normalized closed-loop score (R_int8 - R_random) / (R_float - R_random)"
    value = closed_loop.get("normalized_score")
    note = "" if value is not None else (closed_loop.get("note") or "no closed loop was run")
    return Check("min_score", metric, ">=", value, threshold, enforced, _compare(value, threshold, ">="), note)
