"""The ``edgekit`` command: parse arguments, call one function, map errors to one line.

Each subcommand lives in ``edgekit/commands/`` and imports what it needs when
it runs, so ``edgekit --help`` and the device commands stay fast and light.
``EDGEKIT_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import NoReturn

from edgekit import __version__
from edgekit.core import cleanup
from edgekit.core.errors import EdgekitError, UsageError, storage_error

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from edgekit.commands import register_all

    parser = _Parser(
        prog="edgekit",
        description="Deploy Stable-Baselines3 policies as fully int8 TFLite models on a Coral Edge TPU.",
    )
    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register_all(sub)
    args = parser.parse_args(argv)
    debug = os.environ.get("EDGEKIT_DEBUG", "") not in ("", "0")
    warnings.showwarning = _show_warning
    cleanup.install()  # SIGTERM and SIGHUP clean up as Ctrl-C does
    try:
        return int(args.handler(args) or 0)
    except EdgekitError as exc:
        return _error(storage_error(exc) or exc, debug, command=args.command)
    except cleanup.StopSignal as exc:
        print(f"interrupted ({exc})", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a full or read-only disk, else a bug: still one line unless debugging
        storage = storage_error(exc)
        if storage is not None:
            return _error(storage, debug)
        if debug:
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print("  fix: this is an edgekit bug; rerun with EDGEKIT_DEBUG=1 and report the traceback", file=sys.stderr)
        return 1


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors (a bad option value, an unknown flag) as ``error:`` / ``fix:`` lines."""

    def error(self, message: str) -> NoReturn:
        self.exit(UsageError.exit_code, f"error: {message}\n  fix: see `{self.prog} --help`\n")


def _error(exc: EdgekitError, debug: bool, command: str | None = None) -> int:
    """``error:`` and ``  fix:`` lines (the traceback too when debugging); the exit code. A usage error
    whose raiser named no fix points at the command's help, as argparse's own errors do."""
    if debug:
        traceback.print_exc()
    print(f"error: {exc.message}", file=sys.stderr)
    hint = exc.hint or (f"see `edgekit {command} --help`" if isinstance(exc, UsageError) and command else "")
    if hint:
        print(f"  fix: {hint}", file=sys.stderr)
    return exc.exit_code


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    if category.__module__.startswith("edgekit"):
        print(f"warning: {message}", file=sys.stderr)
    elif os.environ.get("EDGEKIT_DEBUG"):
        print(f"warning: {category.__name__}: {message} ({filename}:{lineno})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
