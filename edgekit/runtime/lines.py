"""Exact line framing with a length limit, for both server transports.

A request is the bytes up to one ``\\n``; nothing else ends a line (a bare
``\\r`` is only JSON whitespace inside it). A line longer than the limit is
discarded whole: its bytes are dropped as they arrive, never held past the
limit, and it yields one ``TOO_LONG`` marker (the caller answers it with one
error) as soon as it crosses the limit; the framing resumes after its
``\\n``. So a client's Nth reply always answers its Nth line, whatever the
lines hold. Stdlib only.
"""

from __future__ import annotations

TOO_LONG = None  # the marker for a discarded over-long line in ``feed``'s result


class LineFramer:
    """Feed it bytes as they arrive; it returns the complete lines (without ``\\n``)."""

    __slots__ = ("limit", "_partial", "_discarding")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._partial = bytearray()  # the start of a line whose end has not arrived (at most ``limit`` bytes)
        self._discarding = False  # inside an over-long line, already answered: drop up to its newline

    def feed(self, data: bytes) -> list[bytes | None]:
        """The lines ``data`` completes, in order; ``TOO_LONG`` once for each line over the limit."""
        limit, partial, end = self.limit, self._partial, len(data)
        if end and not partial and not self._discarding and data.find(b"\n") == end - 1 and end <= limit + 1:
            return [data[:-1]]  # the usual case: exactly one whole line
        lines: list[bytes | None] = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            if self._discarding:
                self._discarding = False  # the over-long line ends here; its one error was given already
            elif len(partial) + newline - start > limit:
                lines.append(TOO_LONG)
            elif partial:
                partial += data[start:newline]
                lines.append(bytes(partial))
            else:
                lines.append(data[start:newline])
            partial.clear()
            start = newline + 1
        if start < end and not self._discarding:
            if len(partial) + end - start > limit:
                lines.append(TOO_LONG)
                partial.clear()
                self._discarding = True
            else:
                partial += data[start:]
        return lines

    def finish(self) -> bytes | None:
        """At the end of input: the last line if it lacked its ``\\n`` (answered as if it had one), else None."""
        rest = None if self._discarding or not self._partial else bytes(self._partial)
        self._partial.clear()
        self._discarding = False
        return rest

    @property
    def pending(self) -> int:
        """Bytes held of a line whose end has not arrived."""
        return len(self._partial)
