"""Every signal that stops a build cleans up as Ctrl-C does (issue 17, item 8; fuzz family "signals").

A real build runs in a child with its own ``$TMPDIR``; SIGINT, SIGTERM or SIGHUP
arrives when a given stage has finished (read from its progress lines). Nothing
may be left: no ``.OUT.partial-*`` beside the output, no ``edgekit-*`` in
``$TMPDIR``, no output, and a bundle that ``--force`` was replacing is intact.
``EDGEKIT_SIGNAL_POINTS=all`` sends each signal after every stage (the count in
docs/security.md); by default three builds run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE_MODEL, REPO
from fuzz_tally import record

from edgekit.bundle import staged_directory
from edgekit.bundle.layout import sha256_file
from edgekit.core import cleanup

SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143), "SIGHUP": (signal.SIGHUP, 129)}
# after which stage's progress line the signal is sent ("0": as soon as the process starts importing)
ALL_POINTS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10")
DEFAULT_CASES = (("SIGTERM", "5"), ("SIGHUP", "4"), ("SIGINT", "5"))  # the next stage, onnx2tf, takes seconds
FAST_BUILD = ("--no-finetune", "--no-widen", "--report-episodes", "0", "--calibration-steps", "400",
              "--validation-steps", "300")


def _cases() -> list[tuple[str, str]]:
    if os.environ.get("EDGEKIT_SIGNAL_POINTS") == "all":
        return [(name, point) for name in SIGNALS for point in ALL_POINTS]
    return list(DEFAULT_CASES)


def _leftovers(out: Path, tmpdir: Path) -> list[str]:
    beside = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    scratch = [p.name for p in tmpdir.iterdir() if p.name.startswith("edgekit-")]
    return beside + scratch


def _fingerprint(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("name,point", _cases())
def test_a_stop_signal_during_a_build_leaves_nothing(tmp_path, built_bundle, name, point):
    signum, expected_code = SIGNALS[name]
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "out.bundle"
    replacing = name == "SIGTERM"  # one case replaces an existing bundle with --force: it must survive
    if replacing:
        shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, out)
        before = _fingerprint(out)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    env.pop("EDGEKIT_DEBUG", None)
    command = [sys.executable, "-m", "edgekit", "build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out),
               *FAST_BUILD, *(["--force"] if replacing else [])]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    assert proc.stderr is not None
    if point == "0":
        time.sleep(0.5)
    else:
        for line in proc.stderr:
            lines.append(line.rstrip())
            if line.startswith(f"[{point}/"):
                break
    sent = proc.poll() is None
    if sent:
        proc.send_signal(signum)
    try:
        _out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        record("signals", "hang")
        raise
    lines += err.splitlines()
    left = _leftovers(out, tmpdir)
    if sent and proc.returncode == 0 and any(line.startswith("bundle written") for line in lines):
        sent = False  # the last stages (under a second) finished before the signal landed: a whole bundle
    clean = (not left and "Traceback" not in err
             and (not sent or proc.returncode == expected_code and lines[-1].startswith("interrupted")))
    record("signals", ("clean error" if sent else "accepted") if clean else "crash")
    assert not left, left
    assert "Traceback" not in err, err
    if sent:
        assert proc.returncode == expected_code, "\n".join(lines)
        assert lines[-1] == ("interrupted" if name == "SIGINT" else f"interrupted ({name})")
    if replacing and sent:
        assert _fingerprint(out) == before
    elif sent:
        assert not out.exists()


# --- the mechanism, in this process --------------------------------------------------------------------


def test_sigterm_inside_a_staged_directory_cleans_up(tmp_path):
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        cleanup.install()
        with pytest.raises(cleanup.StopSignal) as caught, staged_directory(tmp_path / "b") as stage:
            (stage / "half.bin").write_bytes(b"x")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        assert caught.value.exit_code == 143
        assert list(tmp_path.iterdir()) == []
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_signal_held_during_cleanup_is_raised_after_it(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    try:
        cleanup.install()
        done = []
        with pytest.raises(cleanup.StopSignal), cleanup.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            done.append("finished")
        assert done == ["finished"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored():
    """Under nohup SIGHUP is ignored: installing the handlers must not undo that."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        cleanup.install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
