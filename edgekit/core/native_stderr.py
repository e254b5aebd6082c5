"""Silence what native libraries (TensorFlow, TFLite, absl) print to fd 2.

Their C++ logging bypasses Python's ``sys.stderr``, so it is captured at the
file-descriptor level. What was captured is replayed when the block fails or
when ``EDGEKIT_DEBUG`` is set, so nothing useful is lost. Light: stdlib only.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Capture fd 2 (and Python's stderr) for the duration of the block."""
    if os.environ.get("EDGEKIT_DEBUG", "") not in ("", "0"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters, some test runners)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                captured = sink.read().decode("utf-8", "replace").strip()
                if captured:
                    sys.stderr.write(captured[-4000:] + "\n")
