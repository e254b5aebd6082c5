"""Parse what ``edgetpu_compiler -s`` prints (and its ``*_edgetpu.log``) into facts.

The compiler has no machine-readable output; its text is the only record of
what it mapped to the Edge TPU. The labels matched here are the ones Coral's
compiler (v15/v16) prints, e.g. ``Number of operations that will run on CPU:``
and the ``Operator  Count  Status`` table. Lines this parser does not know are
ignored, so a compiler that adds lines does not break it; a field it cannot
find is ``None``, never a guess.

A failed run ends with one of the compiler's failure lines (``Compilation
failed!``, ``Internal compiler error. Aborting!``, ``Model could not be
parsed``, ``Invalid model: FILE`` and its reason), often after a more specific
one (``ERROR: ...``, ``Compilation failed: REASON``, an uncaught C++ exception,
``Compilation timeout. ...``): those lines, most specific first, are the error.
Compiler 16 also tries smaller segments after a failed attempt: when the run
ends with a compiled model, the failed attempts are not its error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAPPED = "Mapped to Edge TPU"

_VERSION = re.compile(r"Edge TPU Compiler version\s+(\S+)")
_COMPILE_MS = re.compile(r"Model compiled successfully in\s+([\d.]+)\s*ms")
_INVALID = re.compile(r"^Invalid model:\s*(.*)$")
_TIMER = re.compile(r"Started a compilation timeout timer of\s+(\d+)\s+seconds")
# Lines that say why a run failed, most specific first; the generic endings close the list.
_SPECIFIC_FAILURES = ("ERROR:", "Compilation failed:", "Compilation timeout", "libc++abi: terminating",
                      "terminating with uncaught exception")
_GENERIC_FAILURES = ("Compilation failed!", "Internal compiler error", "Model could not be parsed")
_MAX_ERROR_LINES = 4
_SIZE = re.compile(r"^([\d.]+)\s*([KMGT]?i?B)$", re.IGNORECASE)
_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\S.*?)\s*$")
_HEADER = re.compile(r"^Operator\s+Count\s+Status\s*$")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

_INT_LABELS = {
    "Number of Edge TPU subgraphs": "subgraphs",
    "Total number of operations": "ops_total",
    "Number of operations that will run on Edge TPU": "ops_on_tpu",
    "Number of operations that will run on CPU": "ops_on_cpu",
}
_SIZE_LABELS = {
    "On-chip memory used for caching model parameters": "on_chip_used_bytes",
    "On-chip memory remaining for caching model parameters": "on_chip_remaining_bytes",
    "Off-chip memory used for streaming uncached model parameters": "off_chip_bytes",
}


@dataclass(frozen=True)
class LoggedOp:
    """One row of the compiler's per-op table."""

    operator: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status.startswith(MAPPED)


@dataclass(frozen=True)
class CompileLog:
    """What one run of the compiler reported; ``None`` where it said nothing."""

    compiler_version: str | None = None
    compile_ms: float | None = None
    ops_total: int | None = None
    ops_on_tpu: int | None = None
    ops_on_cpu: int | None = None
    subgraphs: int | None = None
    on_chip_used_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_bytes: int | None = None
    ops: tuple[LoggedOp, ...] = ()
    compiler_timeout_s: int | None = None  # compiler 16's own timer (its -t), as it reported it
    error: str | None = None  # the compiler's failure lines, most specific first

    @property
    def cpu_op_count(self) -> int | None:
        """Ops left on the CPU: the summary line, else the table, else unknown."""
        if self.ops_on_cpu is not None:
            return self.ops_on_cpu
        if self.ops:
            return sum(op.count for op in self.ops if not op.mapped)
        if self.ops_total is not None and self.ops_on_tpu is not None:
            return self.ops_total - self.ops_on_tpu
        return None

    @property
    def fully_mapped(self) -> bool:
        """Every op on the Edge TPU, in one subgraph; False when the log does not say."""
        if self.error is not None or self.subgraphs == 0:
            return False
        return self.cpu_op_count == 0 and all(op.mapped for op in self.ops)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why ops are not mapped, one line per table row (plus a failure, if any)."""
        out = [f"{op.operator} x{op.count}: {op.status}" for op in self.ops if not op.mapped]
        if self.error is not None:
            out.insert(0, self.error)
        if not out and not self.fully_mapped:
            if self.cpu_op_count:
                out.append(f"{self.cpu_op_count} operation(s) will run on the CPU (the log names no reason)")
            elif self.subgraphs == 0:
                out.append("no Edge TPU subgraph was created")
            else:
                out.append("the compiler's output does not say how the operations were mapped")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "compiler_version": self.compiler_version,
            "compile_ms": self.compile_ms,
            "ops_total": self.ops_total,
            "ops_on_tpu": self.ops_on_tpu,
            "ops_on_cpu": self.cpu_op_count,
            "subgraphs": self.subgraphs,
            "on_chip_used_bytes": self.on_chip_used_bytes,
            "on_chip_remaining_bytes": self.on_chip_remaining_bytes,
            "off_chip_bytes": self.off_chip_bytes,
            "compiler_timeout_s": self.compiler_timeout_s,
            "ops": [{"operator": o.operator, "count": o.count, "status": o.status} for o in self.ops],
            "fully_mapped": self.fully_mapped,
            "reasons": list(self.reasons),
        }


def parse_size(text: str) -> int | None:
    """``'21.75KiB'`` -> bytes; ``None`` for text that is not a size."""
    match = _SIZE.match(text.strip())
    if not match:
        return None
    unit = match.group(2).upper()[0] if match.group(2).upper() != "B" else ""
    return int(round(float(match.group(1)) * _UNITS[unit]))


def parse_compile_log(text: str) -> CompileLog:
    """Read the compiler's stdout and/or log file; the first per-op table wins."""
    fields: dict[str, Any] = {}
    rows: list[LoggedOp] = []
    specific: list[str] = []  # "ERROR: ...", "Invalid model: ..." and its reason, "Compilation failed: ..."
    generic: list[str] = []  # "Compilation failed!", "Internal compiler error. Aborting!", ...
    table = "before"  # before -> in -> after: only the first table is read
    after_invalid = False
    for raw in text.splitlines():
        line = raw.strip()
        if table == "in":
            row = _ROW.match(line)
            if row:
                rows.append(LoggedOp(row.group(1), int(row.group(2)), row.group(3)))
                continue
            if line and not set(line) <= set("-= "):
                table = "after"
        if _HEADER.match(line):
            table = "in" if table == "before" else table
        elif _INVALID.match(line) or line.startswith(_SPECIFIC_FAILURES):
            specific.append(line)
            after_invalid = bool(_INVALID.match(line))
        elif line.startswith(_GENERIC_FAILURES):
            generic.append(line)
        elif after_invalid and line:
            specific.append(line)  # the reason, e.g. "Model not quantized"
            after_invalid = False
        else:
            _read_line(line, fields)
    if (specific or generic) and "compile_ms" not in fields:  # a compiled model: failed attempts don't count
        lines = list(dict.fromkeys(specific + generic))
        if len(lines) > _MAX_ERROR_LINES:  # keep the ending: it says how the run ended
            lines = lines[:_MAX_ERROR_LINES - 1] + lines[-1:]
        fields["error"] = " ".join(lines)
    return CompileLog(ops=tuple(rows), **fields)


def _read_line(line: str, fields: dict[str, Any]) -> None:
    if "compiler_version" not in fields and (match := _VERSION.search(line)):
        fields["compiler_version"] = match.group(1)
        return
    if match := _COMPILE_MS.search(line):
        fields["compile_ms"] = float(match.group(1))
        return
    if match := _TIMER.search(line):
        fields.setdefault("compiler_timeout_s", int(match.group(1)))
        return
    if ":" not in line:
        return
    label, value = (part.strip() for part in line.split(":", 1))
    if label in _INT_LABELS and value.isdigit():
        fields.setdefault(_INT_LABELS[label], int(value))
    elif label in _SIZE_LABELS and (size := parse_size(value)) is not None:
        fields.setdefault(_SIZE_LABELS[label], size)
