"""Stage: torch actor -> ONNX, checked against torch on held-out observations.

The graph has a static batch of 1 and a flat float input ``obs`` of shape
``[1, N]``: the Edge TPU wants static shapes, and rank-2 fully-connected
inputs keep the TFLite FULLY_CONNECTED op in the version the compiler accepts.
"""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from edgekit.artifacts import OnnxModel, PolicyGraph
from edgekit.errors import ConversionError, MissingDependencyError

OPSET = 17
INPUT_NAME = "obs"
OUTPUT_NAME = "out"


def export_onnx(graph: PolicyGraph, samples: np.ndarray, path: Path, tolerance: float = 1e-4) -> OnnxModel:
    """Export ``graph`` to ``path``; fail if ONNX Runtime strays past ``tolerance`` on ``samples``.

    ``samples`` are held-out inputs in the graph's own input space.
    """
    import torch

    dummy = torch.as_tensor(samples[:1])
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph.module,
                (dummy,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise ConversionError(f"torch could not export the actor to ONNX: {exc}") from None
    error = _max_error_vs_torch(graph, samples, path)
    if not error <= tolerance:
        raise ConversionError(f"the ONNX model differs from torch by {error:.2e} (tolerance {tolerance:.0e})")
    return OnnxModel(path=path, opset=OPSET, max_abs_error=error)


def _max_error_vs_torch(graph: PolicyGraph, obs: np.ndarray, path: Path) -> float:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime is not installed", hint="pip install 'edgekit-sb3[host]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    sample = obs[: min(len(obs), 500)]
    onnx_out = np.concatenate([session.run(None, {INPUT_NAME: row[None]})[0] for row in sample])
    return float(np.max(np.abs(onnx_out - graph.outputs(sample))))
