"""One module per subcommand: each adds its parser and a ``run(args)`` handler."""

from __future__ import annotations

import argparse

from edgekit.commands import bench, build, calibrate, check, compile, doctor, report, run, verify


def register_all(sub: argparse._SubParsersAction) -> None:
    """Add every subcommand to the top-level parser."""
    for module in (build, calibrate, run, bench, check, compile, verify, report, doctor):
        module.register(sub)
