"""Per-layer error: where in the int8 model precision goes.

The int8 model runs in a TFLite interpreter that keeps every intermediate
tensor (``experimental_preserve_all_tensors``, reference kernels). Each int8
activation is matched to the float activation of the bundle's ``policy.onnx``
(the same conditioned actor, before conversion) by order and by value, which
survives the converter fusing activations into FULLY_CONNECTED. For every
layer two errors are reported, like TensorFlow Lite's QuantizationDebugger:

* **local**: the float layer fed the int8 model's own (dequantized) input, vs
  its int8 output: what this layer loses by itself. A layer that only rounds
  its output errs by about 0.29 quantization steps (RMSE); much more means its
  weights, bias or output range cost precision. Layers are ranked by it.
* **accumulated**: the float model fed the float observation, vs the int8
  tensor: the drift the policy has reached at this point.

Image policies: the int8 model's 4-D tensors are NHWC, policy.onnx's NCHW; the
int8 ones are read back in NCHW order so that both compare element by element
(CONV_2D layers included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.files import verify_file
from edgekit.bundle.layout import ONNX_MODEL
from edgekit.bundle.manifest import Manifest
from edgekit.core.native_stderr import quiet_native_stderr
from edgekit.core.quant import INT8_MAX, INT8_MIN
from edgekit.report.reference import conditioned_inputs, ort_session, run_rows

MAX_SAMPLES = 1000  # evenly spaced held-out observations: plenty for RMSE, quick to run
ROUNDING_ONLY_RMSE = 12 ** -0.5  # RMSE in steps of a tensor whose only error is rounding
_LAYOUT_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}  # move values, do not change them


@dataclass(frozen=True)
class _Tensor:
    index: int
    name: str
    scale: float
    zero_point: int
    op: str  # producing op, "INPUT" for the model input
    position: int  # 0 for the input, op index + 1 otherwise
    inputs: tuple[int, ...] = ()  # activation tensors the op reads


def layer_errors(bundle_dir: Path, manifest: Manifest, obs: np.ndarray) -> dict[str, Any]:
    """The report section for flat held-out observations ``obs`` (B, N)."""
    x = conditioned_inputs(_subsample(obs), manifest.preprocess, manifest.models["cpu"].input.quant.scale)
    interpreter, backend = _open(verify_file(bundle_dir, manifest, manifest.models["cpu"].file))
    tensors, aliases = _graph(interpreter)
    int8 = _run_int8(interpreter, tensors, x)
    onnx_model, candidates, float_acts = _float_activations(verify_file(bundle_dir, manifest, ONNX_MODEL), x)
    layers = [t for t in tensors if t.op != "INPUT"]
    op_of = {o: node.op_type for node in onnx_model.graph.node for o in node.output}
    affinity = np.array([[_affinity(t.op, op_of.get(c, "")) for c in candidates] for t in layers])
    matched = _align([int8[t.index] for t in layers], [float_acts[c] for c in candidates], affinity)
    names = {tensors[0].index: onnx_model.graph.input[0].name}
    names.update({t.index: candidates[j] for t, j in zip(layers, matched)})
    for alias, source in aliases.items():
        names[alias] = names.get(source, "")
    flat_x = x.reshape(len(x), -1)
    entries = [_entry(tensors[0], flat_x, int8[tensors[0].index], flat_x, None)]
    notes = []
    for t in layers:
        local, ops = _local_float(onnx_model, [names.get(i, "") for i in t.inputs], names[t.index],
                                  [int8[i] for i in t.inputs])
        if local is None:
            notes.append(f"op #{t.position - 1} {t.op}: no float sub-graph to compare locally")
        entries.append(_entry(t, float_acts[names[t.index]], int8[t.index], local, ops))
    ranked = sorted(entries, key=lambda e: -(e["rmse_in_steps"] if e["rmse_in_steps"] is not None
                                             else e["accumulated_rmse_in_steps"]))
    for rank, entry in enumerate(ranked, start=1):
        entry["rank"] = rank
    worst = max(e["accumulated_rmse"] / max(_spread(float_acts[names[t.index]]), 1e-12)
                for e, t in zip(entries[1:], layers)) if layers else 0.0
    if worst > 0.5:
        notes.append("some int8 tensors differ from their float match by more than half their spread: "
                     "the layer matching may be wrong")
    return {
        "status": "partial" if notes else "ok",
        "note": "; ".join(notes),
        "samples": int(len(x)),
        "interpreter": f"{backend.name} {backend.version} (reference kernels, all tensors preserved)",
        "rounding_only_rmse_in_steps": ROUNDING_ONLY_RMSE,
        "layers": entries,
    }


def unavailable(reason: str) -> dict[str, Any]:
    """The section when the comparison could not run."""
    return {"status": "unavailable", "note": reason, "samples": 0, "interpreter": "",
            "rounding_only_rmse_in_steps": ROUNDING_ONLY_RMSE, "layers": []}


def _subsample(obs: np.ndarray) -> np.ndarray:
    if len(obs) <= MAX_SAMPLES:
        return obs
    return obs[np.linspace(0, len(obs) - 1, MAX_SAMPLES).astype(int)]


def _open(path: Path) -> tuple[Any, Any]:
    from edgekit.runtime.interpreters import find_backend

    backend = find_backend()
    kwargs: dict[str, Any] = {"model_path": str(path), "experimental_preserve_all_tensors": True}
    if backend.op_resolver_type is not None:
        kwargs["experimental_op_resolver_type"] = backend.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with quiet_native_stderr():
        interpreter = backend.interpreter_class(**kwargs)
        interpreter.allocate_tensors()
    return interpreter, backend


def _graph(interpreter: Any) -> tuple[list[_Tensor], dict[int, int]]:
    """The int8 activation tensors in op order (input first), and layout-op outputs -> their input."""
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    source = interpreter.get_input_details()[0]["index"]
    ops = interpreter._get_ops_details()
    produced = {source} | {int(o) for op in ops for o in op["outputs"]}
    tensors = [_tensor(details[source], "INPUT", 0, ())]
    aliases: dict[int, int] = {}
    for op in ops:
        inputs = tuple(int(i) for i in op["inputs"] if int(i) in produced)
        out = int(op["outputs"][0])
        if op["op_name"] in _LAYOUT_OPS and len(inputs) == 1:
            aliases[out] = aliases.get(inputs[0], inputs[0])
        elif np.dtype(details[out]["dtype"]) == np.int8 and details[out]["quantization"][0] > 0:
            tensors.append(_tensor(details[out], str(op["op_name"]), int(op["index"]) + 1,
                                   tuple(aliases.get(i, i) for i in inputs)))
    return tensors, aliases


def _tensor(detail: dict, op: str, position: int, inputs: tuple[int, ...]) -> _Tensor:
    scale, zero_point = detail["quantization"]
    return _Tensor(int(detail["index"]), str(detail["name"]), float(scale), int(zero_point), op, position, inputs)


def _run_int8(interpreter: Any, tensors: list[_Tensor], x: np.ndarray) -> dict[int, np.ndarray]:
    """Dequantized int8 activations (B, size) per tensor index."""
    source = tensors[0]
    shape = tuple(interpreter.get_input_details()[0]["shape"])
    q = np.clip(np.rint(x.astype(np.float64) / source.scale) + source.zero_point, INT8_MIN, INT8_MAX)
    q = q.astype(np.int8)
    if q.ndim == 4:  # NCHW images -> the int8 model's NHWC
        q = q.transpose(0, 2, 3, 1)
    rows: dict[int, list[np.ndarray]] = {t.index: [] for t in tensors}
    for row in q:
        interpreter.set_tensor(source.index, row.reshape(shape))
        interpreter.invoke()
        for t in tensors:
            value = interpreter.get_tensor(t.index)
            if value.ndim == 4:  # NHWC feature maps, read in policy.onnx's NCHW order
                value = value.transpose(0, 3, 1, 2)
            rows[t.index].append(value.reshape(-1).copy())
    return {t.index: (np.stack(rows[t.index]).astype(np.float32) - t.zero_point) * np.float32(t.scale)
            for t in tensors}


def _float_activations(path: Path, x: np.ndarray) -> tuple[Any, list[str], dict[str, np.ndarray]]:
    """Every intermediate of policy.onnx on ``x``, as extra graph outputs."""
    import onnx

    model = onnx.load(str(path))
    candidates = [o for node in model.graph.node if node.op_type != "Constant" for o in node.output if o]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend([onnx.ValueInfoProto(name=name) for name in candidates])
    session = ort_session(probe.SerializeToString())
    values = run_rows(session, {model.graph.input[0].name: x})
    acts = dict(zip(candidates, values))
    acts[model.graph.input[0].name] = x.reshape(len(x), -1)
    return model, candidates, acts


# TFLite op -> ONNX op types that can produce the matching float tensor (activations fuse into their op).
_COMPATIBLE = {
    "FULLY_CONNECTED": {"Gemm", "MatMul", "Relu", "Clip", "Add"},
    "ADD": {"Add", "Relu", "Clip"}, "MUL": {"Mul", "Relu", "Clip"},
    "TANH": {"Tanh"}, "LOGISTIC": {"Sigmoid"}, "RELU": {"Relu"},
    "STRIDED_SLICE": {"Slice", "Gather"}, "SLICE": {"Slice"},
    "CONV_2D": {"Conv", "Relu", "Clip"}, "DEPTHWISE_CONV_2D": {"Conv", "Relu", "Clip"}, "MEAN": {"ReduceMean"},
}
_MISMATCH_PENALTY = 1.0  # relative error units: an op of another kind matches only when nothing else does


def _affinity(tflite_op: str, onnx_op: str) -> float:
    kinds = _COMPATIBLE.get(tflite_op)
    return 0.0 if kinds is None or onnx_op in kinds else _MISMATCH_PENALTY


def _align(int8: list[np.ndarray], floats: list[np.ndarray],
           affinity: np.ndarray | None = None) -> list[int]:
    """Order-preserving assignment of int8 tensors to float ones with the least total relative error
    (dynamic programming over (int8 tensor, float tensor) pairs); ``affinity`` penalises op kinds
    that cannot match."""
    m, n = len(int8), len(floats)
    if m == 0:
        return []
    cost = np.full((m, n), np.inf)
    for i, a in enumerate(int8):
        for j, b in enumerate(floats):
            if a.shape == b.shape:
                cost[i, j] = _rmse(a, b) / max(_spread(b), 1e-12) - 1e-9 * j  # ties: the later (fused) tensor
                if affinity is not None:
                    cost[i, j] += affinity[i, j]
    strict = 1 if m <= n else 0  # a float tensor serves one int8 tensor, unless there are too few
    best, back = cost[0].copy(), np.zeros((m, n), dtype=int)
    for i in range(1, m):
        # order[j]: the previous row's best column among 0..j
        order = np.array([int(np.argmin(best[: j + 1])) for j in range(n)])
        row = np.full(n, np.inf)
        for j in range(strict, n):
            k = order[j - strict]
            row[j] = cost[i, j] + best[k]
            back[i, j] = k
        best = row
    if not np.isfinite(best).any():
        # the converter may order parallel branches (e.g. the split input's two layers) differently
        # from the ONNX graph: match each int8 tensor to its closest float tensor independently
        if not np.isfinite(cost).any(axis=1).all():
            raise ValueError("the int8 model's tensors do not match policy.onnx's shapes")
        return [int(np.argmin(cost[i])) for i in range(m)]
    path = [int(np.argmin(best))]
    for i in range(m - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


def _local_float(model: Any, inputs: list[str], output: str, values: list[np.ndarray]
                 ) -> tuple[np.ndarray | None, list[str]]:
    """Float output of the sub-graph from ``inputs`` to ``output``, fed the int8 model's inputs."""
    import onnx

    if not inputs or "" in inputs or output in inputs or len(set(inputs)) != len(inputs):
        return None, []
    try:
        sub = onnx.utils.Extractor(model).extract_model(inputs, [output])
        session = ort_session(sub.SerializeToString())
        shapes = {i.name: i.shape for i in session.get_inputs()}  # feature maps go back to (B, C, H, W)
        feeds = {name: v.reshape(len(v), *shapes[name][1:]) if len(shapes[name]) > 2 else v
                 for name, v in zip(inputs, values)}
        local = run_rows(session, feeds)[0]
    except Exception:  # onnx and onnxruntime raise many types for a sub-graph they cannot cut or run
        return None, []
    return local, [node.op_type for node in sub.graph.node if node.op_type != "Constant"]


def _entry(t: _Tensor, accumulated_ref: np.ndarray, int8: np.ndarray, local_ref: np.ndarray | None,
           float_ops: list[str] | None) -> dict[str, Any]:
    low, high = t.scale * (INT8_MIN - t.zero_point), t.scale * (INT8_MAX - t.zero_point)
    entry: dict[str, Any] = {
        "rank": 0,
        "position": t.position,
        "op": "QUANTIZE (input, host side)" if t.op == "INPUT" else t.op,
        "tensor": t.name,
        "float_ops": float_ops if float_ops is not None else [],
        "size": int(int8.shape[1]),
        "quantization_step": t.scale,
        "zero_point": t.zero_point,
        "float_range": [float(accumulated_ref.min()), float(accumulated_ref.max())],
        "rmse": None, "max_abs_error": None, "mean_error": None, "rmse_in_steps": None,
        "max_error_in_steps": None, "clipped_share": None,
        "accumulated_rmse": _rmse(int8, accumulated_ref),
        "accumulated_max_abs_error": float(np.abs(int8 - accumulated_ref).max()),
        "accumulated_rmse_in_steps": _rmse(int8, accumulated_ref) / t.scale,
    }
    # A float op fed the int8 input can leave the reals (LOG of an int8 zero, in LogSigmoid): no local figure then.
    if local_ref is not None and bool(np.all(np.isfinite(local_ref))):
        err = int8 - local_ref
        tolerance = t.scale / 2
        entry.update({
            "rmse": _rmse(int8, local_ref),
            "max_abs_error": float(np.abs(err).max()),
            "mean_error": float(err.mean()),
            "rmse_in_steps": _rmse(int8, local_ref) / t.scale,
            "max_error_in_steps": float(np.abs(err).max() / t.scale),
            "clipped_share": float(((local_ref < low - tolerance) | (local_ref > high + tolerance)).mean()),
        })
    return entry


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def _spread(b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(b.astype(np.float64) ** 2)))
