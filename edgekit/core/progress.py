"""Progress and per-stage timing on the terminal (stderr), silent with ``--quiet``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Prints ``[2/8] export ONNX ........ 0.4 s  detail`` lines and keeps the timings."""

    def __init__(self, total: int = 0, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.total = total
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.timings: dict[str, float] = {}
        self._index = 0
        self._current = ""
        self._live = bool(getattr(self.stream, "isatty", lambda: False)())

    @contextmanager
    def stage(self, name: str) -> Iterator[StageNote]:
        """Time a stage; the block may set ``note.detail`` to show a result."""
        self._index += 1
        self._current = name
        note = StageNote()
        label = f"[{self._index}/{self.total}] {name}" if self.total else name
        self._write(f"{label} ...", final=False)
        start = time.perf_counter()
        try:
            yield note
        except BaseException:
            self._write(f"{label:<34} failed after {time.perf_counter() - start:.1f} s", final=True)
            raise
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        detail = f"  {note.detail}" if note.detail else ""
        self._write(f"{label:<34} {elapsed:5.1f} s{detail}", final=True)

    def tick(self, message: str) -> None:
        """Live progress inside a long stage (shown on a terminal only)."""
        if self._live and not self.quiet:
            self.stream.write(f"\r\033[K{self._current}: {message}")
            self.stream.flush()

    def info(self, message: str) -> None:
        """A line of information outside the stages."""
        if not self.quiet:
            self.stream.write(message + "\n")
            self.stream.flush()

    def _write(self, text: str, final: bool) -> None:
        if self.quiet:
            return
        if self._live:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()


class StageNote:
    """Mutable note a stage fills in to describe its result."""

    detail: str = ""
