"""The device-side commands and the CLI's one-line ``error:`` / ``fix:`` mapping, without the host stack."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from edgekit import cli
from edgekit.core.errors import BundleError, StorageError, UsageError, storage_error

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def edgekit(capsys):
    """``edgekit(*args)`` -> (exit code, stdout, stderr) of ``edgekit.cli.main`` in this process, with the
    signal handlers and warning hook it installs put back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    saved_show = warnings.showwarning

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's own exits
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    warnings.showwarning = saved_show


def _one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err and "edgekit bug" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert len([line for line in err.splitlines() if line.startswith("  fix: ")]) == 1, err
    for needle in needles:
        assert needle in err, err


def test_verify_passes_on_a_committed_bundle(edgekit, bundle_dir):
    code, out, err = edgekit("verify", str(bundle_dir("ppo-pendulum")), "--device", "cpu")
    assert code == 0, err
    assert "files: 6 sha256 checked" in out and "100 observations" in out
    assert "actions differing from the host's: 0" in out


def test_a_missing_bundle_is_one_line_with_the_fix(edgekit, tmp_path):
    code, _out, err = edgekit("run", str(tmp_path / "nowhere"), "--serve", "stdio", "--device", "cpu")
    assert code == BundleError.exit_code
    _one_line_error(err, "not a directory", "edgekit build")


@pytest.mark.parametrize(("args", "needle"), [
    (("--device", "gpu"), "unknown device"),
    (("--episodes", "0"), "--episodes must be at least 1"),
    (("--on-bad-obs", "hold"), "apply to --serve only"),
    (("--serve", "tcp:notaport"), "tcp"),
    (("--bogus-flag",), "unrecognized arguments"),
])
def test_bad_options_are_usage_errors_on_one_line_with_a_fix(edgekit, bundle_dir, args, needle):
    """Every usage error has its fix line: the raiser's, else the command's help (as argparse's own)."""
    code, _out, err = edgekit("run", str(bundle_dir("ppo-pendulum")), *args)
    assert code == UsageError.exit_code
    _one_line_error(err, needle)


def test_an_unexpected_exception_is_one_line_naming_it_a_bug_and_debug_shows_the_traceback(
        edgekit, bundle_dir, monkeypatch):
    from edgekit.runtime import EdgePolicy

    def broken(*_args, **_kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(EdgePolicy, "load", broken)
    code, _out, err = edgekit("run", str(bundle_dir("ppo-pendulum")), "--serve", "stdio")
    assert code == 1 and "Traceback" not in err
    assert "error: unexpected KeyError: 'boom'" in err and "edgekit bug" in err
    monkeypatch.setenv("EDGEKIT_DEBUG", "1")
    code, _out, err = edgekit("run", str(bundle_dir("ppo-pendulum")), "--serve", "stdio")
    assert code == 1 and "Traceback" in err and "KeyError" in err


def test_a_full_disk_deep_inside_a_library_is_a_storage_error():
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/model.tflite")
        except OSError as inner:
            raise RuntimeError("the library's own wrapper") from inner
    except RuntimeError as exc:
        error = storage_error(exc)
    assert isinstance(error, StorageError)
    assert "/out/model.tflite" in error.message and "free space" in error.hint
    assert storage_error(ValueError("not a disk")) is None


def test_the_console_entry_serves_a_bundle_and_refuses_a_missing_one(bundle_dir, tmp_path):
    """The real ``python -m edgekit`` in a fresh interpreter: one JSON reply per line; a one-line error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    env.pop("EDGEKIT_DEBUG", None)
    bundle = bundle_dir("ppo-cartpole")
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(bundle), "--serve", "stdio", "--device", "cpu"],
                          input='[0.0, 0.1, 0.0, -0.1]\n{"id": 2, "obs": [0.0, 0.0, 0.2, 1.0]}\nnope\n',
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [type(r.get("action")) for r in replies[:2]] == [int, int] and replies[1]["id"] == 2
    assert "error" in replies[2] and "answered 3 requests" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(tmp_path / "gone")], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == BundleError.exit_code
    _one_line_error(proc.stderr, "not a directory")
