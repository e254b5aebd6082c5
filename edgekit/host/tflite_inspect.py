"""What a .tflite model holds: its ops, tensor types and int8 interface.

Read through a TFLite interpreter without default delegates (so the op list is
the model's own, not XNNPACK's rewrite). Light: numpy and an interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.bundle.manifest import TensorSpec
from edgekit.core.errors import BundleError, QuantizationError
from edgekit.core.quant import QuantParams
from edgekit.runtime.interpreters import Backend, find_backend

# Ops whose int32 operand at this position is a bias (int8 kernels accumulate in int32).
_BIAS_OPS = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "TRANSPOSE_CONV": 3}
# Ops whose operands after the first are int32 indices or shapes, not data.
_INDEX_OPS = {"STRIDED_SLICE", "SLICE", "RESHAPE", "PAD", "GATHER", "TRANSPOSE", "MEAN", "SUM", "CONCATENATION"}


@dataclass(frozen=True)
class OpInfo:
    name: str
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]
    problem: str = ""  # why the op is not purely int8, if it is not


@dataclass(frozen=True)
class ModelInfo:
    """The facts about one .tflite file that edgekit checks."""

    path: Path
    ops: tuple[OpInfo, ...]
    input: TensorSpec
    output: TensorSpec
    input_count: int
    output_count: int

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.ops)

    @property
    def problems(self) -> list[str]:
        """Every reason the model is not fully int8, op by op."""
        return [f"{op.name}: {op.problem}" for op in self.ops if op.problem]

    def require_fully_int8(self) -> None:
        """Raise QuantizationError unless input, output and every op are int8."""
        problems = self.problems
        if self.input_count != 1 or self.output_count != 1:
            problems.append(f"{self.input_count} inputs / {self.output_count} outputs (expected 1 / 1)")
        if problems:
            raise QuantizationError(
                f"the TFLite model is not fully int8: {'; '.join(problems[:5])}",
                hint="this policy has an op the int8 converter cannot quantize; see docs/supported.md",
            )


def inspect_int8_model(path: Path, backend: Backend | None = None) -> ModelInfo:
    """Open ``path`` and describe its ops and int8 interface."""
    backend = backend or find_backend()
    try:
        interpreter = backend.interpreter(str(path), plain=True)
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"{path} is not a valid TFLite model ({exc})") from None
    ops = tuple(_op_info(op) for op in interpreter._get_ops_details())
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    return ModelInfo(
        path=Path(path),
        ops=ops,
        input=_tensor_spec(inputs[0], "input"),
        output=_tensor_spec(outputs[0], "output"),
        input_count=len(inputs),
        output_count=len(outputs),
    )


def _op_info(op: dict) -> OpInfo:
    name = str(op["op_name"])
    ins = tuple(np.dtype(t).name for t in op.get("operand_types", ()))
    outs = tuple(np.dtype(t).name for t in op.get("result_types", ()))
    problem = ""
    for position, dtype in enumerate(ins):
        if dtype == "int32" and (_BIAS_OPS.get(name) == position or (name in _INDEX_OPS and position > 0)):
            continue
        if dtype != "int8":
            problem = f"{dtype} input #{position}"
            break
    if not problem and any(dtype != "int8" for dtype in outs):
        problem = f"{', '.join(outs)} output"
    return OpInfo(name=name, input_types=ins, output_types=outs, problem=problem)


def _tensor_spec(detail: dict, what: str) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    if dtype != "int8" or scale == 0:
        raise QuantizationError(f"the model's {what} tensor is {dtype}, not quantized int8")
    return TensorSpec(
        shape=tuple(int(v) for v in detail["shape"]),
        dtype="int8",
        quant=QuantParams(scale=float(scale), zero_point=int(zero_point)),
    )
