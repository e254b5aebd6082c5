"""``scripts/pi_emulated_check.py`` started once per session, early and in the background.

The emulated Raspberry Pi OS check takes minutes of qemu time (two userlands, two jobs) while the rest of the
suite is mostly one busy core: conftest starts it as soon as its two bundles are built (the first test of a
session that selected the ``pi_emulated`` tests) and moves those tests to the end of the run, where
``tests/test_pi_emulated.py`` waits for the report. Nothing is lost: the same command, the same bundles, the
same report; it runs at a lower CPU priority so that it takes the idle core, not the suite's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "pi_emulated_check.py"
SKIP_EXIT = 77
TIMEOUT_S = 5400  # the first run makes both roots and venvs (pip runs emulated); cached afterwards
# Small policies (PPO with tanh, continuous; DQN with ReLU, discrete), held to 3 steps (tests/test_pi_emulated.py).
STRICT_BUNDLES = ("ppo-pendulum", "dqn-cartpole")
NICENESS = 10  # below the build helper (tests/shared_builds.py): the report is needed last


def may_install() -> bool:
    """CI as root installs debootstrap and qemu itself."""
    return os.environ.get("CI") == "true" and os.geteuid() == 0


def missing_tools() -> str | None:
    """Why the check cannot run here (the tests skip with it), or None."""
    if not may_install() and not shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        return "debootstrap not found (apt-get install debootstrap); installed automatically only in CI as root"
    return None


@dataclass
class Started:
    """The running check: its process, JSON report path and output log."""

    proc: subprocess.Popen
    report: Path
    log: Path

    def wait(self) -> tuple[int, str]:
        """(exit code, output) once it has finished."""
        try:
            code = self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return code, self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Kill it (and its qemu children: it leads its own process group) if it is still running."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


_STARTED: Started | None = None


def start(bundles: list[Path], work: Path) -> Started:
    """Start the check on ``bundles`` (once per session; later calls return the first run)."""
    global _STARTED
    if _STARTED is None:
        report, log = work / "report.json", work / "output.log"
        cmd = [sys.executable, str(SCRIPT), "--json", str(report), "--strict"]
        for bundle in bundles:
            cmd += ["--bundle", str(bundle)]
        if may_install() or os.geteuid() == 0:
            cmd.append("--install-tools")  # fetches qemu 10 into the cache; apt-gets only what is missing
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                    start_new_session=True, preexec_fn=lambda: os.nice(NICENESS))
        _STARTED = Started(proc, report, log)
    return _STARTED


def started() -> Started | None:
    return _STARTED
