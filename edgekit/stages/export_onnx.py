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

from edgekit.core.errors import ConversionError, MissingDependencyError
from edgekit.stages.artifacts import OnnxModel, PolicyGraph

OPSET = 17
INPUT_NAME = "obs"
OUTPUT_NAME = "out"
MIN_TOLERANCE = 1e-4
STEP_SHARE = 0.05  # the export may differ from torch by a 20th of the int8 output step the outputs will get


def export_onnx(graph: PolicyGraph, samples: np.ndarray, path: Path, tolerance: float | None = None) -> OnnxModel:
    """Export ``graph`` to ``path``; fail if ONNX Runtime strays past ``tolerance`` on ``samples``.

    ``samples`` are held-out inputs in the graph's own input space. The default tolerance is
    ``STEP_SHARE`` of the int8 step of the outputs' range (at least ``MIN_TOLERANCE``): float32 sums over
    wide layers (a Humanoid actor's 752 split inputs) differ between torch and ONNX Runtime by more than a
    fixed 1e-4, and what matters is that the difference stays far below what int8 can represent.
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
    error, spread = _max_error_vs_torch(graph, samples, path)
    if tolerance is None:
        tolerance = max(MIN_TOLERANCE, STEP_SHARE * spread / 255.0)
    if not error <= tolerance:
        raise ConversionError(f"the ONNX model differs from torch by {error:.2e} (tolerance {tolerance:.1e})")
    return OnnxModel(path=path, opset=OPSET, max_abs_error=error)


def _max_error_vs_torch(graph: PolicyGraph, obs: np.ndarray, path: Path) -> tuple[float, float]:
    """The largest |ONNX - torch| on (up to 500 of) ``obs``, and the spread of torch's outputs there."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime is not installed", hint="pip install 'edgekit-sb3[host]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    sample = obs[: min(len(obs), 500)]
    onnx_out = np.concatenate([session.run(None, {INPUT_NAME: row[None]})[0] for row in sample])
    torch_out = graph.outputs(sample)
    return float(np.max(np.abs(onnx_out - torch_out))), float(np.max(torch_out) - np.min(torch_out))
