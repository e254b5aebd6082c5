"""Argument types shared by the commands: a bad value is refused by argparse with one line saying why."""

from __future__ import annotations

import argparse

MAX_SEED = 2**32 - 1  # numpy, gymnasium and torch all take it; gymnasium refuses negative seeds


def seed(text: str) -> int:
    """``--seed``: an integer from 0 to 2**32 - 1 (episode i of a run is seeded ``seed + i``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is an integer from 0 to {MAX_SEED}, not {text!r}")
    return value
