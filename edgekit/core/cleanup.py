"""Every way out of a command cleans up: stop signals as Ctrl-C, scratch directories removed.

Python turns SIGINT into ``KeyboardInterrupt``, so the staging directory, the
scratch directory and any half-written file are removed on the way out. SIGTERM
(what ``timeout``, ``kill`` and systemd send) and SIGHUP (a closed terminal)
would end the process on the spot and leave them behind; ``install`` makes them
raise ``StopSignal``, a ``KeyboardInterrupt``, so the same cleanup runs. A
signal the process was started ignoring (``nohup``) stays ignored.

``held`` holds the stop signals while a cleanup or a rename runs, so a second
signal cannot cut it short; the first one held is raised when the block ends.
``scratch_directory`` is a temporary directory removed that way. Light: stdlib
only.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """The process was asked to stop by ``signum``; the exit status is 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def install() -> None:
    """SIGTERM and SIGHUP raise ``StopSignal`` in the main thread (SIGINT already raises)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise)


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise StopSignal(signum)


@contextmanager
def held() -> Iterator[None]:
    """Hold the stop signals for the block; when it ends, deliver the first that arrived to the handler
    it would have met (``StopSignal``, ``KeyboardInterrupt``, or the default action)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is not signal.SIG_IGN:
            previous[signum] = handler if handler is not None else signal.SIG_DFL
            signal.signal(signum, lambda received, _frame: arrived.append(received))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if arrived:
        handler = previous[arrived[0]]
        if callable(handler):
            handler(arrived[0], None)
        else:
            signal.raise_signal(arrived[0])


@contextmanager
def scratch_directory(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A new temporary directory (in ``$TMPDIR`` unless ``parent``), removed on any way out."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        with held():
            shutil.rmtree(path, ignore_errors=True)
