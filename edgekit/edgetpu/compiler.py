"""Find and run Google's ``edgetpu_compiler``: a subprocess with a timeout, never a shell.

The compiler is a closed x86-64 Linux binary from Coral's apt repository, so
everything here treats it as an external tool that may be missing, slow or
failing: the argument list is built by edgekit (paths are never interpreted by
a shell), the run is bounded by a timeout that kills its whole process group,
and every failure becomes one ``CompilerError`` line with a fix.

Compiler 16 runs each compilation attempt under a timer of its own (``-t``,
180 s by default): edgekit passes its ``--timeout`` there too, so that a long
compile the user allowed is not stopped by the compiler at 180 s. Its own
kill, a few seconds later, bounds the whole run (the compiler may try several
segments one after another).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.core.errors import CompilerError
from edgekit.edgetpu.log import parse_compile_log

COMPILER_NAME = "edgetpu_compiler"
INSTALL_HINT = (
    "install Google's Edge TPU compiler on an x86-64 Linux machine (there is no ARM build, so not on the Pi): "
    "add Coral's apt repository (https://coral.ai/docs/edgetpu/compiler/) and `sudo apt-get install "
    "edgetpu-compiler`, then run `edgekit compile BUNDLE` there"
)
_VERSION = re.compile(r"Edge TPU Compiler version\s+(\S+)")
_TAIL_LINES = 3
TIMER_SINCE = 16  # the first compiler major version with its own timer (-t/--timeout_sec)
_KILL_GRACE_S = 5.0  # lets the compiler's own timer report first


class CompilerMissingError(CompilerError):
    """No compiler at the given path or on PATH: callers that can go on without it catch this one."""

    default_hint = INSTALL_HINT


@dataclass(frozen=True)
class CompilerRun:
    """One finished compiler run: its command, exit code and what it printed."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        """stdout then stderr, the text the log parser reads."""
        return self.stdout + ("\n" + self.stderr if self.stderr else "")


def find_compiler(explicit: str | os.PathLike[str] | None = None) -> str:
    """The compiler's path: ``explicit`` if given (a path or a name on PATH), else PATH."""
    if explicit is not None:
        text = os.fspath(explicit)
        path = Path(text).expanduser()
        if path.is_file():
            if not os.access(path, os.X_OK):
                raise CompilerError(f"{path} is not executable", hint=f"chmod +x {path}, or pass another --compiler")
            return str(path.resolve())
        found = shutil.which(text) if os.sep not in text else None
        if found is None:
            raise CompilerMissingError(f"the Edge TPU compiler {text!r} was not found")
        return found
    found = shutil.which(COMPILER_NAME)
    if found is None:
        raise CompilerMissingError(f"{COMPILER_NAME} is not installed (not found on PATH)")
    return found


def compiler_version(compiler: str, timeout: float = 30) -> str:
    """``edgetpu_compiler --version`` -> e.g. ``'16.0.384591198'``."""
    run = _run([compiler, "--version"], timeout=timeout, cwd=None)
    match = _VERSION.search(run.output)
    if run.returncode != 0 or match is None:
        raise CompilerError(
            f"{compiler} --version did not report an Edge TPU compiler version (exit {run.returncode}: "
            f"{_tail(run.output) or 'no output'})",
            hint="pass the path of Google's edgetpu_compiler with --compiler, or reinstall edgetpu-compiler",
        )
    return match.group(1)


def compile_model(compiler: str, model: Path, out_dir: Path, timeout: float = 180,
                  min_runtime: int | None = None, version: str | None = None) -> CompilerRun:
    """Run ``compiler -s [-t S] -o OUT_DIR [-m N] MODEL``; raise CompilerError unless it exits 0.

    ``version`` (``compiler_version``'s answer) decides whether the compiler takes ``-t``; unknown,
    it is assumed to (16.0 is the current and last release).
    """
    if not timeout > 0:
        raise CompilerError(f"the compiler timeout must be positive, got {timeout}", hint="pass --timeout SECONDS > 0")
    args = [compiler, "-s"]
    if has_own_timer(version):
        args += ["-t", str(math.ceil(timeout))]
    args += ["-o", str(Path(out_dir).resolve())]
    if min_runtime is not None:
        args += ["-m", str(int(min_runtime))]
    args.append(str(Path(model).resolve()))
    run = _run(args, timeout=timeout + _KILL_GRACE_S, cwd=Path(out_dir), reported_timeout=timeout)
    if run.returncode != 0:
        raise CompilerError(
            f"{Path(compiler).name} failed on {Path(model).name} (exit {run.returncode}): {failure_detail(run)}",
            hint="run `edgekit check` on the model to see which op or tensor the Edge TPU cannot take",
        )
    return run


def has_own_timer(version: str | None) -> bool:
    """Whether this compiler version takes ``-t`` (16 and later; an unknown version is taken as current)."""
    if version is None:
        return True
    major = version.split(".", 1)[0]
    return not major.isdigit() or int(major) >= TIMER_SINCE


def failure_detail(run: CompilerRun) -> str:
    """The compiler's failure lines, else the last lines it printed."""
    return parse_compile_log(run.output).error or _tail(run.output) or "no output"


def _run(args: list[str], timeout: float, cwd: Path | None, reported_timeout: float | None = None) -> CompilerRun:
    """Run without a shell in a new process group; on timeout kill the group, not just the child."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", cwd=cwd, start_new_session=True)
    except OSError as exc:
        raise CompilerMissingError(f"could not start {args[0]}: {exc.strerror or exc}") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise CompilerError(
            f"{Path(args[0]).name} did not finish within {reported_timeout or timeout:g} s and was stopped",
            hint="pass a larger --timeout (big models take minutes), or check the model with `edgekit check`",
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    return CompilerRun(tuple(args), proc.returncode, stdout, stderr, time.monotonic() - start)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):  # a grandchild left the group, holding the pipes
        proc.communicate(timeout=5)


def _tail(text: str) -> str:
    """The last few meaningful lines, joined into one (errors stay one line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:])[:400]
