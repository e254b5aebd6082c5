"""Trained agents and built bundles made once per session, by the test process or by one helper process.

Building the ~120 agent cases is most of the suite's time and uses one core. When a session runs
tests/test_build_e2e.py (which needs every case), conftest starts this file as a helper process that builds
the cases from the far end of that module's order while the tests work from the near end, so a second core
does half of the builds. Each result is made once: whoever claims a key first (an ``O_EXCL`` file in the
session's work directory) makes it, the other waits for its ``.done`` file (a pickle) or, if the maker
failed or died, makes it itself, so that a failing build still fails in the test that asked for it.

    python tests/shared_builds.py WORK_DIR NAME...      # the helper (conftest starts it)
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_S = 0.1
NICENESS = 3  # the tests' own builds come first


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def obtain(work_dir: Path, key: str, make: Callable[[], Any]) -> Any:
    """``make()``'s value for ``key``, made by this process or by the other one (see the module docstring)."""
    done, claim = work_dir / f"{key}.done", work_dir / f"{key}.claim"
    while True:
        if done.is_file():
            return pickle.loads(done.read_bytes())
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(claim.read_text() or 0)
            except (OSError, ValueError):
                owner = 0  # being written, or just released: look again
            if owner and not _alive(owner):
                with contextlib.suppress(OSError):
                    claim.unlink()  # its maker died: claim it again
            time.sleep(POLL_S)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        try:
            value = make()
        except BaseException:
            claim.unlink()  # the next one to ask makes it again (and meets the same error)
            raise
        partial = done.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(pickle.dumps(value))
        partial.replace(done)
        return value


def start_helper(work_dir: Path, names: list[str]) -> subprocess.Popen:
    """The helper process that builds ``names`` in this order (its output goes to ``work_dir/helper.log``)."""
    log = open(work_dir / "helper.log", "w")  # noqa: SIM115 (the child holds it)
    with log:
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(work_dir), *names],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parents[1], start_new_session=True,
                                preexec_fn=lambda: os.nice(NICENESS))


def main(argv: list[str]) -> int:
    import conftest

    work_dir = Path(argv[0])
    for name in argv[1:]:
        if os.getppid() == 1:
            return 0  # the test session is gone
        claim = work_dir / f"bundle-{name}.claim"
        if claim.exists() or (work_dir / f"bundle-{name}.done").exists():
            continue  # the tests got there first
        try:
            conftest.bundle_for(work_dir, name)
        except Exception as exc:  # the tests build it themselves and fail with the real error
            print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
        else:
            print(f"{name}: built", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
