"""Several ``edgekit`` command lines run one after the other in ONE fresh interpreter (``run_cli_batch``).

Each ``python -m edgekit build ...`` that fails at its env or model pays the start-up of torch, SB3 and
Gymnasium (seconds) for a one-line error. Error cases that need no process of their own run here instead:
each case still gets its own real file descriptors 0, 1 and 2 (so native writes are captured too), its
environment, working directory, stdin and exit code, exactly as ``python -m edgekit`` would give them
(``edgekit.cli.main``; an uncaught exception prints its traceback and exits 1, as the interpreter does).
Cases share the imports, which is the point; each command starts from a fresh ``os.environ``, ``tempfile``
directory and warnings registry.

    python tests/cli_batch.py CASES.json RESULTS.json      # run by conftest.run_cli_batch
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any


def _reset_warning_registries() -> None:
    """A warning shown in one case is shown again in the next (as in a fresh process)."""
    for module in list(sys.modules.values()):
        registry = getattr(module, "__warningregistry__", None)
        if isinstance(registry, dict):
            registry.clear()
    warnings.resetwarnings()


def run_case(case: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from edgekit import cli

    os.environ.clear()
    os.environ.update(case["env"])
    tempfile.tempdir = None  # TMPDIR is read again
    os.chdir(case["cwd"])
    _reset_warning_registries()
    paths = {name: scratch / name for name in ("stdin", "stdout", "stderr")}
    paths["stdin"].write_text(case.get("stdin") or "")
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    sys.stdout.flush()
    sys.stderr.flush()
    files = [open(paths["stdin"], "rb"), open(paths["stdout"], "wb"), open(paths["stderr"], "wb")]  # noqa: SIM115
    for fd, handle in enumerate(files):
        os.dup2(handle.fileno(), fd)
    streams = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    try:
        try:
            code = cli.main(case["args"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        for fd, copy in enumerate(saved):
            os.dup2(copy, fd)
            os.close(copy)
        for handle in files:
            handle.close()
    return {"returncode": int(code or 0), "stdout": paths["stdout"].read_text(errors="replace"),
            "stderr": paths["stderr"].read_text(errors="replace")}


def main(argv: list[str]) -> int:
    cases = json.loads(Path(argv[0]).read_text())
    results = []
    with tempfile.TemporaryDirectory(prefix="edgekit-cli-batch-") as scratch:
        for case in cases:
            results.append(run_case(case, Path(scratch)))
    Path(argv[1]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
