"""Stage: float SavedModel -> fully int8 TFLite, calibrated on rollout observations.

Full-integer post-training quantization with int8 input and output tensors
(no QUANTIZE/DEQUANTIZE at the edges: they would stay on the CPU of an Edge
TPU host) and per-tensor weights: the Edge TPU compiler expects per-tensor
FULLY_CONNECTED weights, and a current converter quantizes per channel unless
told otherwise. ``per_channel``: the conditioning made every Linear layer a 1x1
CONV_2D (``stages/channels.py``), whose filters are quantized per output
channel; the model must then hold no FULLY_CONNECTED (TensorFlow 2.21 would give
it per-channel weights too), which is checked. The result is inspected and refused unless every tensor is
int8 (int32 biases excepted), and one-hot / binary input features must find 0
and 1 on exact int8 levels (see ``stages/condition.py``).

Image inputs (NCHW calibration, fed NHWC as onnx2tf's graph takes them) must
get input scale 1/divisor and zero point -128, so that a pixel's int8 value is
exactly ``x - 128``: the calibration's input range is forced to [0, 255/divisor]
by setting one pixel of the first calibration image to each end (the rest of
the set is untouched), and the result is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgekit.bundle.image_spec import ZERO_POINT, ImageInput
from edgekit.bundle.manifest import Preprocess, TensorSpec
from edgekit.core.errors import ConversionError, QuantizationError
from edgekit.core.native_stderr import quiet_native_stderr
from edgekit.core.quant import LEVEL_TOLERANCE, QuantParams
from edgekit.host.tensorflow_import import import_tensorflow
from edgekit.host.tflite_inspect import inspect_int8_model
from edgekit.stages.artifacts import Int8Model, TFModel
from edgekit.stages.convert import nhwc


def quantize_int8(tf_model: TFModel, calibration: np.ndarray, preprocess: Preprocess, path: Path,
                  binary: tuple[int, ...] = (), per_channel: bool = False) -> Int8Model:
    """Convert with the ``calibration`` inputs (in model-input space) and check the result.

    ``binary``: the observation features that only take 0 and 1 (one-hot, MultiBinary) and that the
    conditioning mapped onto exact int8 levels.
    """
    tf = import_tensorflow()
    if preprocess.image is not None:
        calibration = _full_pixel_range(nhwc(calibration), preprocess.image.divisor)

    def representative() -> Iterator[list[np.ndarray]]:
        for row in calibration:
            yield [row[None]]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(tf_model.saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = not per_channel  # per-tensor FULLY_CONNECTED for the Edge TPU
    try:
        with quiet_native_stderr():
            flatbuffer = converter.convert()
    except Exception as exc:
        raise ConversionError(f"the TFLite int8 conversion failed: {type(exc).__name__}: {exc}") from None
    path.write_bytes(flatbuffer)
    info = inspect_int8_model(path)
    info.require_fully_int8()
    if per_channel and "FULLY_CONNECTED" in info.op_names:
        raise ConversionError("the per-channel int8 model holds a FULLY_CONNECTED layer (its weights would be "
                              "per-channel, which the Edge TPU is not known to accept)",
                              hint="this is an edgekit bug; please report it with the model (--no-per-channel "
                              "avoids it)")
    if preprocess.image is not None:
        _check_image_input(info.input, preprocess.image)
    check_binary_levels(preprocess, binary, info.input.quant)
    return Int8Model(path=path, input=info.input, output=info.output, preprocess=preprocess, ops=info.op_names)


def _full_pixel_range(calibration: np.ndarray, divisor: float) -> np.ndarray:
    """A copy whose first image holds a 0 and a 255 pixel (in model units), so the input range is exact."""
    out = calibration.copy()
    first = out[0].reshape(-1)
    first[0], first[-1] = 0.0, 255.0 / divisor
    return out


def _check_image_input(spec: TensorSpec, image: ImageInput) -> None:
    """The int8 input must be NHWC with q = pixel - 128 exactly."""
    expected = (1, *image.hwc)
    if spec.shape != expected:
        raise ConversionError(f"the int8 model takes {spec.shape}, not the NHWC images {expected}",
                              hint="this is an edgekit bug for this policy; please report it with the model")
    if spec.quant.zero_point != ZERO_POINT or not np.isclose(spec.quant.scale, image.scale, rtol=1e-6):
        raise ConversionError(f"the int8 input quantization is {spec.quant}, not scale 1/{image.divisor:g} and "
                              f"zero point {ZERO_POINT}", hint="this is an edgekit bug; please report it")


def check_binary_levels(preprocess: Preprocess, binary: tuple[int, ...], quant: QuantParams) -> None:
    """0 and 1 of every 0/1 feature must reach the model exactly, on distinct int8 levels (``binary``: the
    features the conditioning mapped for that; empty with ``--no-input-scaling``, a plain conversion)."""
    if not binary:
        return
    residuals = preprocess.binary_residuals(list(binary), quant)
    levels = preprocess.binary_levels(list(binary), quant)
    if not (np.all(residuals <= LEVEL_TOLERANCE) and np.all(levels[:, 1] - levels[:, 0] >= 1.0)):
        raise QuantizationError(
            f"one-hot / binary inputs are not on exact int8 levels (off by up to {float(residuals.max()):.3g} "
            f"steps; input scale {quant.scale:.6g}, zero point {quant.zero_point}, split {preprocess.split})",
            hint="this is an edgekit bug; please report it with the model (--no-input-scaling avoids the check)")
