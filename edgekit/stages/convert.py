"""Stage: ONNX -> float TensorFlow SavedModel with onnx2tf.

onnx2tf prints a great deal and writes float TFLite files we do not ship;
its output goes to a scratch directory and its chatter is captured (shown
only if it fails).

Image policies: the ONNX input is NCHW (B, C, H, W), as torch's; onnx2tf makes
the TF input NHWC (B, H, W, C) without a transpose, so 4-D samples are fed
to TF transposed. For 3-channel 4-D inputs onnx2tf fetches sample images from
the internet for its own test inference unless a file of that name is in the
working directory: the build writes its held-out images there and runs
onnx2tf in the scratch directory, so the build needs no network.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np

from edgekit.core.errors import ConversionError, MissingDependencyError
from edgekit.core.native_stderr import quiet_native_stderr
from edgekit.host.tensorflow_import import import_tensorflow
from edgekit.stages.artifacts import OnnxModel, TFModel

ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # onnx2tf looks for it in cwd


def convert_to_tensorflow(onnx_model: OnnxModel, samples: np.ndarray, work_dir: Path,
                          tolerance: float = 1e-3) -> TFModel:
    """Run onnx2tf and check the TF graph against ONNX Runtime on held-out ``samples`` (model inputs)."""
    import_tensorflow()
    limit = sys.getrecursionlimit()
    try:
        import onnx2tf
    except ImportError:
        raise MissingDependencyError("onnx2tf is not installed", hint="pip install 'edgekit-sb3[host]'") from None
    finally:
        sys.setrecursionlimit(limit)  # onnx2tf raises it to 2**31 at import, which turns deep
        # recursion anywhere else in the process into a segfault instead of a RecursionError
    out_dir = work_dir / "saved_model"
    log = io.StringIO()
    if samples.ndim == 4:
        np.save(work_dir / ONNX2TF_SAMPLE_FILE, nhwc(samples[:20]))
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), quiet_native_stderr(), \
                contextlib.chdir(work_dir):
            keras_model = onnx2tf.convert(
                input_onnx_file_path=str(onnx_model.path),
                output_folder_path=str(out_dir),
                output_signaturedefs=True,
                not_use_onnxsim=True,
                non_verbose=True,
                verbosity="error",
            )
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        tail = "\n".join(log.getvalue().strip().splitlines()[-5:])
        raise ConversionError(f"onnx2tf failed: {type(exc).__name__}: {exc}\n{tail}".strip()) from None
    finally:
        sys.setrecursionlimit(limit)
    if not (out_dir / "saved_model.pb").is_file():
        raise ConversionError("onnx2tf wrote no SavedModel", hint="run with EDGEKIT_DEBUG=1 to see its log")
    error = _max_error_vs_onnx(keras_model, onnx_model, samples[:200])
    if not error <= tolerance:
        raise ConversionError(f"the TensorFlow model differs from ONNX by {error:.2e} (tolerance {tolerance:.0e})")
    return TFModel(saved_model_dir=out_dir, max_abs_error=error)


def nhwc(samples: np.ndarray) -> np.ndarray:
    """Model inputs as the TF graph takes them: 4-D (image) inputs from NCHW to NHWC, others unchanged."""
    return np.ascontiguousarray(samples.transpose(0, 2, 3, 1)) if samples.ndim == 4 else samples


def _max_error_vs_onnx(keras_model: object, onnx_model: OnnxModel, obs: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_model.path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for row in obs:
        expected = session.run(None, {"obs": row[None]})[0]
        actual = np.asarray(keras_model(nhwc(row[None]), training=False))  # type: ignore[operator]
        worst = max(worst, float(np.max(np.abs(actual - expected))))
    return worst
