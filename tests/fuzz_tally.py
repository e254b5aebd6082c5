"""Counts per fuzz family (tried, clean error, accepted, crash, hang), printed at the end of the session.

Issue 17's closing note asks for these counts; ``attempt`` runs one fuzz case,
counts its outcome and lets a crash or a hang fail the test.
"""

from __future__ import annotations

import signal
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from edgekit.core.errors import EdgekitError

TALLIES: dict[str, Counter[str]] = defaultdict(Counter)
OUTCOMES = ("tried", "clean error", "accepted", "crash", "hang")


class Hang(Exception):
    """A case ran longer than its time limit."""


@contextmanager
def time_limit(seconds: float) -> Any:
    """Raise ``Hang`` in the main thread after ``seconds`` (SIGALRM)."""

    def expire(_signum: int, _frame: Any) -> None:
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(family: str, call: Callable[[], Any], seconds: float = 20.0) -> str:
    """Run ``call`` once: "accepted", "clean error" (an EdgekitError); a crash (any other exception) or a
    hang is counted and raised."""
    tally = TALLIES[family]
    tally["tried"] += 1
    try:
        with time_limit(seconds):
            call()
    except EdgekitError:
        tally["clean error"] += 1
        return "clean error"
    except Hang:
        tally["hang"] += 1
        raise
    except BaseException:
        tally["crash"] += 1
        raise
    tally["accepted"] += 1
    return "accepted"


def record(family: str, outcome: str) -> None:
    """Count a case run elsewhere (a child process)."""
    TALLIES[family]["tried"] += 1
    TALLIES[family][outcome] += 1


def add(family: str, tried: int, clean: int, crash: int = 0, hang: int = 0) -> None:
    """Count cases run and classified elsewhere (a sweep in worker processes): clean answers as clean errors."""
    tally = TALLIES[family]
    tally["tried"] += tried
    tally["clean error"] += clean
    tally["crash"] += crash
    tally["hang"] += hang


def summary_lines() -> list[str]:
    return [f"{family}: " + ", ".join(f"{key} {tally[key]}" for key in OUTCOMES)
            for family, tally in sorted(TALLIES.items())]
