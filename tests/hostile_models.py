"""Hostile .tflite models built in the test session: one op code swapped, or a graph with no outputs.

Such a model keeps every structural property ``edgekit.runtime.tflite_guard``
checks (indices, buffers, who writes what), so it reaches the interpreter,
whose kernels then read the tensors as another op would: STRIDED_SLICE,
SPLIT, SLICE or BATCH_MATMUL in place of TANH or FULLY_CONNECTED crashed the
process before the child-process probe existed; SQRT, RSQRT and SIGN made
``invoke()`` raise. The bundle's manifest is re-hashed, as an attacker
would, so only the probe stands between the file and the serving process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

from ai_edge_litert.schema_py_generated import BuiltinOperator

SWAP_TARGETS = ("STRIDED_SLICE", "SPLIT", "SLICE", "BATCH_MATMUL", "SQRT", "RSQRT", "SIGN")
SWAP_SOURCES = ("TANH", "FULLY_CONNECTED")
_PLACEHOLDER = BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES  # deprecated_builtin_code of codes >= 127


def op_code(name: str) -> int:
    return int(getattr(BuiltinOperator, name))


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


def _field(data: bytes, table: int, slot: int) -> int:
    """Absolute position of field ``slot`` of the table at ``table``, or 0 when absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    size = struct.unpack_from("<H", data, vtable)[0]
    at = 4 + 2 * slot
    offset = struct.unpack_from("<H", data, vtable + at)[0] if at < size else 0
    return table + offset if offset else 0


def _tables(data: bytes, table: int, slot: int) -> list[int]:
    field = _field(data, table, slot)
    if not field:
        return []
    vector = field + _u32(data, field)
    return [vector + 4 + 4 * i + _u32(data, vector + 4 + 4 * i) for i in range(_u32(data, vector))]


def swap_op_code(model: bytes, source: str, target: str) -> bytes:
    """``model`` with every op of builtin ``source`` turned into ``target`` (its OperatorCode rewritten)."""
    data = bytearray(model)
    root = _u32(data, 0)
    want, new = op_code(source), op_code(target)
    swapped = 0
    for code in _tables(data, root, 1):  # Model.operator_codes
        deprecated, builtin = _field(data, code, 0), _field(data, code, 3)
        current = max(struct.unpack_from("<b", data, deprecated)[0] if deprecated else 0,
                      struct.unpack_from("<i", data, builtin)[0] if builtin else 0)
        if current != want:
            continue
        if not deprecated or (new >= _PLACEHOLDER and not builtin):
            raise ValueError(f"{source}'s operator code has no field to rewrite in place")
        struct.pack_into("<b", data, deprecated, min(new, _PLACEHOLDER))
        if builtin:
            struct.pack_into("<i", data, builtin, new)
        swapped += 1
    if not swapped:
        raise ValueError(f"the model has no {source} op")
    return bytes(data)


def without_outputs(model: bytes) -> bytes:
    """``model`` whose graph lists no outputs (the vector's length set to 0)."""
    data = bytearray(model)
    graph = _tables(data, _u32(data, 0), 2)[0]  # Model.subgraphs[0]
    field = _field(data, graph, 2)  # SubGraph.outputs
    struct.pack_into("<I", data, field + _u32(data, field), 0)
    return bytes(data)


def rehashed_bundle(src: Path, dst: Path, model: bytes) -> Path:
    """A copy of bundle ``src`` whose CPU model is ``model``, with the manifest's sha256 updated to match."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    name = manifest["models"]["cpu"]["file"]
    (dst / name).write_bytes(model)
    manifest["files"][name] = hashlib.sha256(model).hexdigest()
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def swapped_op_bundle(src: Path, dst: Path, source: str, target: str) -> Path:
    name = json.loads((src / "manifest.json").read_text())["models"]["cpu"]["file"]
    return rehashed_bundle(src, dst, swap_op_code((src / name).read_bytes(), source, target))
