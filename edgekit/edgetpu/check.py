"""``edgekit check``: predict, without the compiler, how a .tflite maps onto the Edge TPU.

The compiler runs only on x86-64 Linux; this check runs anywhere and reads the
model's flatbuffer directly (no interpreter, no TensorFlow when ai_edge_litert
is installed). It applies Coral's published requirements ("TensorFlow models
on the Edge TPU"): every tensor 8-bit quantized (int32 only for biases and
constant index/shape operands), static shapes, parameters constant at compile
time, only the 3 innermost dimensions larger than 1, the supported-operations
list with the limitations it documents per op, and the single graph cut: the
first op that cannot map sends itself and every later op to the CPU.

It is a prediction: the compiler has undocumented limits (tensor sizes,
precision heuristics, op versions) that only the real run shows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgekit.core.errors import BundleError, MissingDependencyError

CACHE_BYTES = 8 * 1024 * 1024  # the Edge TPU's on-chip parameter memory ("about 8 MB")
MAX_FILE_BYTES = 2 * 1024**3
SOFTMAX_MAX_ELEMENTS = 16_000
FC_MAX_VERSION = 4  # int8 FULLY_CONNECTED; newer versions (keep_num_dims, int16, sparse) are refused

# Coral's supported operations (TFLite builtin names), compiler 16.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH",
    "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})

# Operands that are parameters, hence must be constant at compile time: op -> {position: role}.
PARAM_OPERANDS: dict[str, dict[int, str]] = {
    "FULLY_CONNECTED": {1: "weights", 2: "bias"},
    "CONV_2D": {1: "filter", 2: "bias"},
    "DEPTHWISE_CONV_2D": {1: "filter", 2: "bias"},
    "TRANSPOSE_CONV": {0: "output shape", 1: "filter", 3: "bias"},
    "PRELU": {1: "alpha"},
    "RESHAPE": {1: "shape"},
    "EXPAND_DIMS": {1: "axis"},
    "MEAN": {1: "axes"}, "SUM": {1: "axes"}, "REDUCE_MAX": {1: "axes"}, "REDUCE_MIN": {1: "axes"},
    "PAD": {1: "paddings"},
    "SLICE": {1: "begin", 2: "size"},
    "STRIDED_SLICE": {1: "begin", 2: "end", 3: "strides"},
    "TRANSPOSE": {1: "permutation"},
    "SPLIT": {0: "axis"},
    "RESIZE_BILINEAR": {1: "size"}, "RESIZE_NEAREST_NEIGHBOR": {1: "size"},
}
_INT32_ROLES = frozenset({"bias", "output shape", "shape", "axis", "axes", "paddings", "begin", "size", "end",
                          "strides", "permutation"})
_EIGHT_BIT = frozenset({"INT8", "UINT8"})
_SCHEMAS = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated")


@dataclass(frozen=True)
class OpCheck:
    """One operator in execution order and the prediction for it."""

    index: int
    op: str
    version: int
    problems: tuple[str, ...]  # why this op cannot map, by its own rules
    risks: tuple[str, ...] = ()  # documented caveats the file alone cannot settle
    on_tpu: bool = True  # the prediction, after the graph cut
    cut_by: int | None = None  # index of the op that cut the graph before this one

    @property
    def mappable(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        if self.cut_by is not None:
            return f"after the graph cut at op #{self.cut_by}: every later op runs on the CPU"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "version": self.version, "on_tpu": self.on_tpu,
                "mappable": self.mappable, "reason": self.reason, "risks": list(self.risks)}


@dataclass(frozen=True)
class CheckReport:
    """The predicted mapping of one model."""

    model: str
    ops: tuple[OpCheck, ...]
    cut_index: int | None
    tpu_parameter_bytes: int
    parameter_bytes: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    cache_bytes: int = CACHE_BYTES

    @property
    def tpu_op_count(self) -> int:
        return sum(op.on_tpu for op in self.ops)

    @property
    def tpu_share(self) -> float:
        return self.tpu_op_count / len(self.ops) if self.ops else 0.0

    @property
    def fully_mappable(self) -> bool:
        return bool(self.ops) and all(op.on_tpu for op in self.ops)

    @property
    def placement(self) -> str:
        """Which part runs where, in one line: the Edge TPU's ops, the CPU's, and the op that cut the graph."""
        if not self.ops:
            return "no ops"
        if self.fully_mappable:
            return f"all {len(self.ops)} ops on the Edge TPU"
        tpu = [op.index for op in self.ops if op.on_tpu]
        cpu = [op.index for op in self.ops if not op.on_tpu]
        text = (f"Edge TPU: {_ranges(tpu)}; CPU: {_ranges(cpu)}" if tpu
                else f"CPU: all {len(self.ops)} ops (none maps onto the Edge TPU)")
        if self.cut_index is not None:
            cut = self.ops[self.cut_index]
            text += f" (graph cut at #{cut.index} {cut.op}: {cut.problems[0]})"
        return text

    @property
    def reasons(self) -> tuple[str, ...]:
        """One line per op that cannot map by itself."""
        return tuple(f"#{op.index} {op.op}: {op.reason}" for op in self.ops if op.problems)

    @property
    def risks(self) -> tuple[str, ...]:
        out = [f"#{op.index} {op.op}: {risk}" for op in self.ops for risk in op.risks]
        if self.tpu_parameter_bytes > self.cache_bytes:
            out.append(f"parameters ({_size(self.tpu_parameter_bytes)}) exceed the {_size(self.cache_bytes)} "
                       "on-chip cache: the rest streams from host memory on every inference")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "fully_mappable": self.fully_mappable,
            "ops_total": len(self.ops),
            "ops_on_tpu": self.tpu_op_count,
            "tpu_share": round(self.tpu_share, 4),
            "cut_index": self.cut_index,
            "placement": self.placement,
            "tpu_parameter_bytes": self.tpu_parameter_bytes,
            "parameter_bytes": self.parameter_bytes,
            "cache_bytes": self.cache_bytes,
            "ops": [op.to_dict() for op in self.ops],
            "risks": list(self.risks),
            "notes": list(self.notes),
        }


def check_path(path: Path) -> CheckReport:
    """A bundle directory (its CPU int8 model, hash-checked) or a .tflite file."""
    path = Path(path)
    if path.is_dir():
        from edgekit.bundle.files import verify_file
        from edgekit.bundle.manifest import Manifest

        manifest = Manifest.read(path)
        return check_model(verify_file(path, manifest, manifest.models["cpu"].file))
    return check_model(path)


def check_model(path: Path) -> CheckReport:
    """Read ``path``'s flatbuffer and predict the mapping of its main subgraph."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path} does not exist", hint="pass a .tflite model or a bundle directory")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise BundleError(f"{path} is larger than 2 GiB; refusing to read it")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BundleError(f"{path} is not a TFLite model (no TFL3 identifier)",
                          hint="pass a .tflite model or a bundle directory written by `edgekit build`")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # a damaged flatbuffer fails anywhere inside the generated reader
        raise BundleError(f"{path} could not be parsed as a TFLite flatbuffer ({type(exc).__name__})") from None
    if not model.subgraphs:
        raise BundleError(f"{path} has no subgraph", hint="pass a model written by the TFLite converter")
    try:
        return _Analysis(schema, model, data).report(str(path))
    except (IndexError, KeyError):  # an operator or tensor index that points outside the model
        raise BundleError(f"{path} is inconsistent: an index points outside the model") from None


class _Analysis:
    """The rules, applied op by op to the main subgraph."""

    def __init__(self, schema: ModuleType, model: Any, data: bytes) -> None:
        self.model, self.data = model, data
        self.graph = model.subgraphs[0]
        self.op_names = _enum_names(schema.BuiltinOperator)
        self.type_names = _enum_names(schema.TensorType)
        self.activation_names = _enum_names(schema.ActivationFunctionType)
        self.graph_inputs = set(_ints(self.graph.inputs))
        self.graph_outputs = set(_ints(self.graph.outputs))

    def report(self, name: str) -> CheckReport:
        own = [self._check(i, op) for i, op in enumerate(self.graph.operators or [])]
        ops, cut = [], None
        for check, edge in own:
            if check.problems and not edge and cut is None:
                cut = check.index
            on_tpu = not check.problems and cut is None
            after = cut if (cut is not None and cut != check.index and not check.problems) else None
            ops.append(OpCheck(check.index, check.op, check.version, check.problems, check.risks, on_tpu, after))
        tpu_ops = [self.graph.operators[op.index] for op in ops if op.on_tpu]
        return CheckReport(
            model=name, ops=tuple(ops), cut_index=cut,
            tpu_parameter_bytes=self._parameter_bytes(tpu_ops),
            parameter_bytes=self._parameter_bytes(self.graph.operators or []),
            notes=tuple(self._notes()),
        )

    # -- one op ----------------------------------------------------------------------------------
    def _check(self, index: int, op: Any) -> tuple[OpCheck, bool]:
        code = self.model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = self.op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
            name = f"CUSTOM:{custom}"
        version = int(code.version or 1)
        edge = self._edge_conversion(name, op)
        if edge:
            return OpCheck(index, name, version, (edge,)), True
        problems: list[str] = []
        risks: list[str] = []
        if name not in SUPPORTED_OPS:
            problems.append(f"{name} is not in the Edge TPU's supported operations")
        problems += self._tensor_problems(name, op)
        rule = _OP_RULES.get(name)
        if rule is not None and name in SUPPORTED_OPS:
            rule(self, op, version, problems, risks)
        return OpCheck(index, name, version, tuple(dict.fromkeys(problems)), tuple(risks)), False

    def _edge_conversion(self, name: str, op: Any) -> str:
        """QUANTIZE of a float model input / DEQUANTIZE to a float model output: CPU, but no cut."""
        ins, outs = _ints(op.inputs), _ints(op.outputs)
        if name == "QUANTIZE" and ins and ins[0] in self.graph_inputs and not self._eight_bit(ins[0]):
            return (f"converts the {self._type(ins[0]).lower()} model input to 8 bits on the CPU "
                    "(convert with an int8 input to keep it on the Edge TPU)")
        if name == "DEQUANTIZE" and outs and outs[0] in self.graph_outputs and ins and self._eight_bit(ins[0]):
            return (f"converts to the {self._type(outs[0]).lower()} model output on the CPU "
                    "(convert with an int8 output to keep it on the Edge TPU)")
        return ""

    def _tensor_problems(self, name: str, op: Any) -> list[str]:
        roles = PARAM_OPERANDS.get(name, {})
        by_issue: dict[str, list[str]] = {}
        operands = [(f"input #{i}", t, roles.get(i)) for i, t in enumerate(_ints(op.inputs))]
        operands += [(f"output #{i}" if len(_ints(op.outputs)) > 1 else "output", t, None)
                     for i, t in enumerate(_ints(op.outputs))]
        for label, t, role in operands:
            if t < 0:
                continue  # an omitted optional operand
            what = role or label
            kind = self._type(t)
            constant = self._is_constant(t)
            if kind == "INT32" and role in _INT32_ROLES:
                pass
            elif kind not in _EIGHT_BIT:
                by_issue.setdefault(f"{kind.lower()}, not 8-bit quantized", []).append(what)
            elif not self._has_quant(t):
                by_issue.setdefault("8-bit without quantization parameters", []).append(what)
            if role is not None and not constant:
                by_issue.setdefault("not constant at compile time", []).append(what)
            if role is None and not constant:
                tensor = self.graph.tensors[t]
                signature = _ints(tensor.shapeSignature)
                if any(d < 0 for d in signature):
                    by_issue.setdefault(f"dynamic shape {signature}", []).append(what)
                shape = _ints(tensor.shape)
                if any(d > 1 for d in shape[:-3]):
                    by_issue.setdefault(f"rank {len(shape)} shape {shape}: only the 3 innermost dimensions "
                                        "may exceed 1", []).append(what)
        return [f"{', '.join(dict.fromkeys(whats))}: {issue}" for issue, whats in by_issue.items()]

    # -- tensors ---------------------------------------------------------------------------------
    def _type(self, t: int) -> str:
        return self.type_names.get(int(self.graph.tensors[t].type), "UNKNOWN")

    def _eight_bit(self, t: int) -> bool:
        return self._type(t) in _EIGHT_BIT

    def _has_quant(self, t: int) -> bool:
        q = self.graph.tensors[t].quantization
        scale = None if q is None else q.scale
        return scale is not None and len(scale) > 0 and all(float(s) > 0 for s in scale)

    def _buffer_size(self, t: int) -> int:
        """Bytes of constant data behind tensor ``t``; 0 when it is computed at run time."""
        tensor = self.graph.tensors[t]
        if t in self.graph_inputs or tensor.isVariable or not 0 < tensor.buffer < len(self.model.buffers or []):
            return 0
        buf = self.model.buffers[tensor.buffer]
        if buf.data is not None and len(buf.data) > 0:
            return len(buf.data)
        return int(buf.size or 0) if (buf.offset or 0) > 1 else 0

    def _buffer_bytes(self, t: int) -> bytes | None:
        if not self._buffer_size(t):
            return None
        buf = self.model.buffers[self.graph.tensors[t].buffer]
        if buf.data is not None and len(buf.data) > 0:
            return np.asarray(buf.data, dtype=np.uint8).tobytes()
        return self.data[buf.offset:buf.offset + buf.size]

    def _is_constant(self, t: int) -> bool:
        return self._buffer_size(t) > 0

    def _constant_ints(self, t: int) -> list[int] | None:
        raw = self._buffer_bytes(t) if t >= 0 else None
        dtype = {"INT32": "<i4", "INT64": "<i8"}.get(self._type(t)) if t >= 0 else None
        if raw is None or dtype is None:
            return None
        return [int(v) for v in np.frombuffer(raw, dtype=dtype)]

    def _rank(self, t: int) -> int:
        return len(_ints(self.graph.tensors[t].shape))

    def _parameter_bytes(self, ops: list[Any]) -> int:
        seen: dict[int, int] = {}
        for op in ops:
            for t in _ints(op.inputs):
                if t >= 0 and t not in seen:
                    seen[t] = self._buffer_size(t)
        return sum(seen.values())

    def _notes(self) -> list[str]:
        notes = []
        if len(self.model.subgraphs) > 1:
            notes.append(f"{len(self.model.subgraphs)} subgraphs: only the main one is checked")
        tensors = self.graph.tensors or []
        if tensors and not any(self._eight_bit(t) for t in range(len(tensors))):
            notes.append("no tensor is 8-bit: the compiler rejects the whole model (\"Model not quantized\")")
        if not self.graph.operators:
            notes.append("the model has no operations")
        return notes


# -- documented per-op limitations ---------------------------------------------------------------
def _fully_connected(a: _Analysis, op: Any, version: int, problems: list[str], risks: list[str]) -> None:
    opts = op.builtinOptions
    if opts is not None and int(getattr(opts, "weightsFormat", 0)) != 0:
        problems.append("weights in a shuffled format; only the default fully-connected weights format maps")
    if opts is not None and getattr(opts, "keepNumDims", False):
        problems.append("keep_num_dims=True: the output must be one-dimensional (keep the input rank 2)")
    outs = _ints(op.outputs)
    if outs and sum(d > 1 for d in _ints(a.graph.tensors[outs[0]].shape)) > 1:
        problems.append(f"output {_ints(a.graph.tensors[outs[0]].shape)} is not one-dimensional")
    if version > FC_MAX_VERSION:
        problems.append(f"op version {version}: the compiler maps FULLY_CONNECTED up to version {FC_MAX_VERSION} "
                        "(\"Operation version not supported\")")
    ins = _ints(op.inputs)
    if ins and a._rank(ins[0]) > 2 and not (opts is not None and getattr(opts, "keepNumDims", False)):
        risks.append(f"input rank {a._rank(ins[0])} is flattened to 2; keep fully-connected inputs [1, N]")
    weights = a.graph.tensors[ins[1]].quantization if len(ins) > 1 and ins[1] >= 0 else None
    if weights is not None and weights.scale is not None and len(weights.scale) > 1:
        risks.append(f"per-channel weights ({len(weights.scale)} scales): the Edge TPU compiler is reported to "
                     "expect per-tensor fully-connected weights")


def _pool_or_concat(a: _Analysis, op: Any, version: int, problems: list[str], risks: list[str]) -> None:
    act = int(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0)
    if act:
        problems.append(f"fused activation {a.activation_names.get(act, act)}; this op maps only without one")
    if a.op_names.get(_builtin(a, op)) == "CONCATENATION":
        ins = _ints(op.inputs)
        constants = [t for t in ins if a._is_constant(t)]
        if constants and (len(ins) != 2 or not all(_all_zero(a, t) for t in constants)):
            problems.append("a constant input is allowed only as the all-zero second of exactly 2 inputs")


def _softmax(a: _Analysis, op: Any, version: int, problems: list[str], risks: list[str]) -> None:
    ins = _ints(op.inputs)
    if not ins:
        return
    shape = _ints(a.graph.tensors[ins[0]].shape)
    if sum(d > 1 for d in shape) > 1:
        problems.append(f"input {shape} is not 1-D")
    if int(np.prod(shape)) > SOFTMAX_MAX_ELEMENTS:
        problems.append(f"input has more than {SOFTMAX_MAX_ELEMENTS} elements")


def _strided_slice(a: _Analysis, op: Any, version: int, problems: list[str], risks: list[str]) -> None:
    ins = _ints(op.inputs)
    strides = a._constant_ints(ins[3]) if len(ins) > 3 else None
    if strides is None or any(s != 1 for s in strides):
        problems.append("strides must all be 1")
    opts = op.builtinOptions
    if opts is not None and (getattr(opts, "ellipsisMask", 0) or getattr(opts, "newAxisMask", 0)):
        problems.append("ellipsis_mask and new_axis_mask must be 0")


def _no_batch_axis(a: _Analysis, op: Any, version: int, problems: list[str], risks: list[str]) -> None:
    name = a.op_names.get(_builtin(a, op), "")
    ins = _ints(op.inputs)
    if not ins or (name == "SPLIT" and len(ins) < 2):
        return
    data_t, axis_t = (ins[1], ins[0]) if name == "SPLIT" else (ins[0], ins[1] if len(ins) > 1 else -1)
    rank = a._rank(data_t)
    if name == "PACK":
        axes = [int(getattr(op.builtinOptions, "axis", 0) or 0)]
        rank += 1
    elif name == "PAD":
        pads = a._constant_ints(axis_t)
        if pads is None:
            return
        rows = [pads[2 * i:2 * i + 2] for i in range(len(pads) // 2)]
        axes = [i for i, row in enumerate(rows) if any(row)]
    else:
        found = a._constant_ints(axis_t)
        if found is None:
            return
        axes = found
    axes = [ax % rank for ax in axes] if rank else axes
    if 0 in axes and rank > 1:
        problems.append("operates on the batch dimension")
    if name in ("MEAN", "PAD") and rank == 4 and any(ax not in (1, 2) for ax in axes if ax != 0):
        problems.append("only the x and y dimensions are supported")


def _resize(a: _Analysis, op: Any, version: int, problems: list[str], risks: list[str]) -> None:
    risks.append("may be left on the CPU depending on input/output size, to avoid a loss of precision")


_OP_RULES = {
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _pool_or_concat, "MAX_POOL_2D": _pool_or_concat,
    "CONCATENATION": _pool_or_concat,
    "SOFTMAX": _softmax,
    "STRIDED_SLICE": _strided_slice,
    "MEAN": _no_batch_axis, "SUM": _no_batch_axis, "REDUCE_MAX": _no_batch_axis, "REDUCE_MIN": _no_batch_axis,
    "PAD": _no_batch_axis, "SPLIT": _no_batch_axis, "PACK": _no_batch_axis,
    "RESIZE_BILINEAR": _resize, "RESIZE_NEAREST_NEIGHBOR": _resize,
}


# -- helpers -------------------------------------------------------------------------------------
def _schema() -> ModuleType:
    """The generated TFLite schema reader: ai_edge_litert's (light), else TensorFlow's."""
    for name in _SCHEMAS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError("no TFLite flatbuffer schema is importable (needed by `edgekit check`)",
                                 hint="pip install ai-edge-litert flatbuffers")


def _builtin(a: _Analysis, op: Any) -> int:
    code = a.model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _all_zero(a: _Analysis, t: int) -> bool:
    raw = a._buffer_bytes(t)
    q = a.graph.tensors[t].quantization
    zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    dtype = np.int8 if a._type(t) == "INT8" else np.uint8
    return raw is not None and bool(np.all(np.frombuffer(raw, dtype=dtype) == zero))


def _enum_names(enum: type) -> dict[int, str]:
    return {int(v): k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"ops #0-#2, #5"``."""
    parts: list[str] = []
    start = prev = None
    for i in [*indices, None]:
        if start is not None and (i is None or i != prev + 1):
            parts.append(f"#{start}" if start == prev else f"#{start}-#{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ("op " if len(indices) == 1 else "ops ") + ", ".join(parts)


def _size(n: int) -> str:
    for unit, step in (("MiB", 1024**2), ("KiB", 1024)):
        if n >= step:
            return f"{n / step:.2f} {unit}"
    return f"{n} B"


def format_report(report: CheckReport) -> str:
    """The per-op table and the verdict, as ``edgekit check`` prints them."""
    width = max([len(op.op) for op in report.ops] + [8])
    lines = [f"model: {report.model}", f"{'#':>3}  {'op':<{width}}  {'v':>2}  {'edge tpu':<8}  reason"]
    for op in report.ops:
        mark = "  <- graph cut" if op.index == report.cut_index else ""
        lines.append(f"{op.index:>3}  {op.op:<{width}}  {op.version:>2}  {'yes' if op.on_tpu else 'no':<8}  "
                     f"{op.reason}{mark}".rstrip())
    share = int(100 * report.tpu_share)  # floored: 99.6 % is not 100 %
    lines.append(f"predicted on the Edge TPU: {report.tpu_op_count} of {len(report.ops)} ops ({share}%)")
    lines.append(f"runs where: {report.placement}")
    used = 100.0 * report.tpu_parameter_bytes / report.cache_bytes
    lines.append(f"parameters on the Edge TPU: {_size(report.tpu_parameter_bytes)} of the "
                 f"{_size(report.cache_bytes)} on-chip cache ({used:.1f}%)")
    lines += [f"risk: {risk}" for risk in report.risks]
    lines += [f"note: {note}" for note in report.notes]
    lines.append("verdict: fully mappable (a prediction; the compiler has the last word)" if report.fully_mappable
                 else "verdict: NOT fully mappable")
    return "\n".join(lines)
