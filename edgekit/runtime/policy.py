"""``EdgePolicy``: a bundle's int8 policy on an Edge TPU or the CPU.

``predict`` does what SB3's ``model.predict(obs, deterministic=True)[0]``
does, on the int8 model: encode the observation as SB3's preprocessing does
(one-hot, concatenated Dict keys: ``edgekit.observations``), preprocess and
quantize it, invoke, dequantize, post-process (clip / unscale / argmax /
per-branch argmax / threshold). Every constant comes from the manifest.
Image bundles take uint8 images in the env's own layout (``runtime.image_input``).
Imports numpy and one TFLite interpreter, nothing heavier.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.files import verify_file
from edgekit.bundle.manifest import Manifest, ModelEntry
from edgekit.errors import BundleError, DeviceError
from edgekit.native_io import quiet_native_stderr
from edgekit.observations import ObservationEncoder
from edgekit.postprocess import PostProcessor
from edgekit.quant import INT8_MAX, INT8_MIN, split_quantize
from edgekit.runtime.encoded_step import make_encoded_step
from edgekit.runtime.image_input import ImageObservations, make_image_step
from edgekit.runtime.interpreters import Backend, DeviceRequest, find_backend, load_edgetpu_delegate
from edgekit.runtime.step import fast_path_available, make_step, output_reader
from edgekit.runtime.tflite_guard import check_tflite_structure


class EdgeTPUFallbackWarning(UserWarning):
    """``device="auto"`` found no usable Edge TPU and runs on the CPU."""


class EdgePolicy:
    """The deployed policy. Create it with :meth:`EdgePolicy.load`."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, entry: ModelEntry, interpreter: Any,
                 device: str, backend: Backend) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        self.device = device  # "cpu" or the Edge TPU it runs on, e.g. "usb"
        self.backend = backend
        self.model_file = entry.file
        self.entry = entry
        self.observation_shape = manifest.observation_space.shape  # one observation (Box); () for Discrete, Dict
        self.encoder = ObservationEncoder(manifest.observation_space)
        image = manifest.preprocess.image  # images: accepted in the env's layout, as uint8 (runtime.image_input)
        self._image = None if image is None else ImageObservations(image)
        if image is not None:
            self.observation_shape = image.shape
        self.observation_dtype = np.dtype(np.uint8 if image is not None else np.float32)
        self._interpreter = interpreter
        self._invoke = interpreter.invoke
        self._set = interpreter.set_tensor
        self._get = interpreter.get_tensor
        in_detail = interpreter.get_input_details()[0]
        out_detail = interpreter.get_output_details()[0]
        self._in_index = in_detail["index"]
        self._out_index = out_detail["index"]
        self._in_shape = tuple(int(v) for v in in_detail["shape"])
        self._check_interface(entry, in_detail, out_detail)
        # obs -> int8 in one multiply-add: q = obs * a + b, with the preprocessing folded in. VecNormalize's
        # clip((x - mean) / std, -c, c) folds too: it is a clamp of x to mean ± c * std, then an affine map.
        qin, pre = entry.input.quant, manifest.preprocess
        size = 0 if image is not None else self.encoder.features  # images: no per-feature map
        mean, std = (np.zeros(size), np.ones(size)) if pre.normalize is None else \
            (np.asarray(pre.normalize.mean), np.asarray(pre.normalize.std))
        scale = np.asarray(pre.scale, dtype=np.float64) * qin.scale
        self._a = 1.0 / (std * scale)
        self._b = qin.zero_point - (mean / std + np.asarray(pre.offset, dtype=np.float64)) / scale
        self._clamp = None if pre.normalize is None else pre.normalize.bounds()
        self._split = pre.split
        self._zero = qin.zero_point
        self._out_scale = np.float32(entry.output.quant.scale)
        self._out_zero = np.float32(entry.output.quant.zero_point)
        self._post = PostProcessor(manifest.postprocess, manifest.action_space)
        self._size = size
        self.fast_path = fast_path_available(interpreter)
        if self.fast_path:
            self._install_fast_predict()

    # --- construction -------------------------------------------------------------

    @classmethod
    def load(cls, bundle_dir: str | Path, device: str = "auto", interpreter: str | None = None,
             num_threads: int | None = 1) -> EdgePolicy:
        """Open a bundle on ``device``: ``auto`` | ``cpu`` | ``usb[:N]`` | ``pci[:N]``.

        ``auto`` uses an Edge TPU when the bundle has a compiled model and
        libedgetpu opens one, else the CPU int8 model with one warning; an
        explicit TPU device that cannot be opened is an error.
        """
        bundle_dir = Path(bundle_dir)
        request = DeviceRequest.parse(device)
        manifest = Manifest.read(bundle_dir)
        backend = find_backend(interpreter)
        if request.kind != "cpu":
            tpu = cls._try_edgetpu(bundle_dir, manifest, backend, request, num_threads)
            if tpu is not None:
                return tpu
        entry = manifest.models["cpu"]
        path = verify_file(bundle_dir, manifest, entry.file)
        return cls(bundle_dir, manifest, entry, _open(backend, path, num_threads, None), "cpu", backend)

    @classmethod
    def _try_edgetpu(cls, bundle_dir: Path, manifest: Manifest, backend: Backend, request: DeviceRequest,
                     num_threads: int | None) -> EdgePolicy | None:
        entry = manifest.models.get("edgetpu")
        explicit = request.kind != "auto"
        if entry is None:
            message = "the bundle has no Edge TPU model (compile it with `edgekit compile BUNDLE`)"
            if explicit:
                raise DeviceError(message, hint="compile the bundle, or use --device cpu")
            warnings.warn(f"{message}; running the int8 model on the CPU", EdgeTPUFallbackWarning, stacklevel=3)
            return None
        path = verify_file(bundle_dir, manifest, entry.file)
        try:
            delegate = load_edgetpu_delegate(backend, request)
            interpreter = _open(backend, path, num_threads, [delegate])
        except DeviceError as exc:
            if explicit:
                raise
            warnings.warn(f"{exc.message}; running the int8 model on the CPU", EdgeTPUFallbackWarning, stacklevel=3)
            return None
        return cls(bundle_dir, manifest, entry, interpreter, request.delegate_device or "tpu", backend)

    def _check_interface(self, entry: ModelEntry, in_detail: dict, out_detail: dict) -> None:
        for what, detail, spec in (("input", in_detail, entry.input), ("output", out_detail, entry.output)):
            scale, zero = detail["quantization"]
            if np.dtype(detail["dtype"]) != np.int8 or tuple(detail["shape"]) != spec.shape \
                    or not np.isclose(scale, spec.quant.scale, rtol=1e-6) or zero != spec.quant.zero_point:
                raise BundleError(f"the model's {what} tensor does not match the manifest")
        expected = self.encoder.features * self.manifest.preprocess.input_factor
        if self._in_shape[0] != 1 or int(np.prod(self._in_shape)) != expected:
            raise BundleError("the model's input shape does not fit the observation space")
        image = self.manifest.preprocess.image
        if image is not None and (self._in_shape != (1, *image.hwc) or entry.input.quant.zero_point != -128
                                  or not np.isclose(entry.input.quant.scale, image.scale, rtol=1e-6)):
            raise BundleError("the model's input is not the NHWC int8 image (scale 1/divisor, zero point -128) "
                              "the manifest describes")

    # --- inference ----------------------------------------------------------------

    def predict(self, observation: Any) -> np.ndarray:
        """One action for one observation, or a batch of actions for a batch.

        Shaped and typed like SB3's ``model.predict(obs, deterministic=True)[0]``.
        """
        return self._predict_general(observation)

    def _predict_general(self, observation: Any) -> np.ndarray:
        obs, single = self._as_batch(observation)
        if single:
            return self._post.one(self._dequantize(self._forward(obs[0])))
        raw = np.stack([self._forward(row) for row in obs])
        return self._post(self._dequantize(raw))

    def _install_fast_predict(self) -> None:
        """Shadow ``predict`` with a closure that sends single observations down the fast step: ndarrays of
        a Box's shape directly, images as uint8 in the env's layout, anything else once encoded into its
        flat features."""
        if self._image is not None:
            self._install_fast_image_predict(self._image)
            return
        identity = self.encoder.identity
        step = make_step(self._interpreter, self._in_index, self._out_index, self._a, self._b, self._post,
                         self._dequantize, self.observation_shape if identity else (self._size,),
                         self.manifest.action_space.shape, split=self._split, zero_point=self._zero,
                         clamp=self._clamp)
        self._invoke = self._interpreter._interpreter.Invoke  # invoke() refuses the step's held views
        general, shape, ndarray = self._predict_general, self.observation_shape, np.ndarray
        encode = self.encoder.encode

        def predict(observation: Any) -> np.ndarray:
            if type(observation) is ndarray and observation.shape == shape:
                return step(observation)
            return general(observation)

        direct = None  # one observation straight to int8 levels (not with a split input)
        if not identity and not self._split and self._clamp is None:
            read = output_reader(self._interpreter.tensor(self._out_index)().reshape(-1), self._post,
                                 self._dequantize, self.manifest.action_space.shape)
            direct = make_encoded_step(self._interpreter, self._in_index, self._out_index, self._a, self._b,
                                       self.encoder, read)

        def predict_encoded(observation: Any) -> np.ndarray:
            if direct is not None:
                action = direct(observation)
                if action is not None:
                    return action
            flat, single = encode(observation)  # batches, JSON lists, and the errors
            if single:
                return step(flat[0])
            return self._post(self._dequantize(np.stack([self._forward(row) for row in flat])))

        chosen = predict if identity else predict_encoded
        chosen.__doc__ = EdgePolicy.predict.__doc__
        self.predict = chosen  # type: ignore[method-assign]

    def _install_fast_image_predict(self, images: ImageObservations) -> None:
        """As ``_install_fast_predict``, for single uint8 images in the env's layout."""
        step = make_image_step(self._interpreter, self._in_index, self._out_index, images.image, self._post,
                               self._dequantize, self.manifest.action_space.shape)
        self._invoke = self._interpreter._interpreter.Invoke
        general, shape, ndarray, uint8 = self._predict_general, self.observation_shape, np.ndarray, np.uint8

        def predict(observation: Any) -> np.ndarray:
            if type(observation) is ndarray and observation.shape == shape and observation.dtype == uint8:
                return step(observation)
            return general(observation)

        predict.__doc__ = EdgePolicy.predict.__doc__
        self.predict = predict  # type: ignore[method-assign]

    def predict_outputs(self, observation: Any) -> np.ndarray:
        """The dequantized raw network outputs (B, K) for a batch: Q-values, logits, actions."""
        obs, _ = self._as_batch(observation)
        return self._dequantize(np.stack([self._forward(row) for row in obs]))

    def invoke_int8(self, q: np.ndarray) -> np.ndarray:
        """Run the model on an already-quantized input (benchmarks, verification)."""
        self._set(self._in_index, q.reshape(self._in_shape))
        self._invoke()
        return self._get(self._out_index)[0]

    def observations_of(self, features: np.ndarray) -> Any:
        """A batch of observations as the env returns them (a dict of batches for a Dict space; uint8 images in
        the env's layout) from flat features (B, F), e.g. a bundle's calibration.npz or verify.npz rows: what
        ``predict`` takes."""
        if self._image is not None:
            return np.asarray(features).astype(np.uint8, copy=False).reshape(-1, *self.observation_shape)
        return self.encoder.decode(features)

    def quantize_observations(self, observation: Any) -> np.ndarray:
        """The int8 model inputs (B, input size) for observations as the env returns them (one, or a batch):
        checked, VecNormalize'd if the bundle says so, preprocessed and quantized as ``predict`` does."""
        flat, _ = self._as_batch(observation)
        return np.stack([self.quantize(row) for row in flat])

    def quantize(self, flat: np.ndarray) -> np.ndarray:
        """Preprocess and quantize one flat row that ``_as_batch`` has already checked and normalized
        (images: one (H, W, C) uint8 image)."""
        if self._image is not None:
            return self._image.quantize(flat)
        q = flat.astype(np.float64) * self._a
        q += self._b
        if self._split:
            return split_quantize(q, self._zero, self._split)
        np.rint(q, out=q)
        np.clip(q, INT8_MIN, INT8_MAX, out=q)
        return q.astype(np.int8)

    def saturated_features(self, observation: Any) -> int:
        """How many features of ``observation`` (one, or a batch) fall outside the int8 input range.

        Such values are clipped to -128/127, i.e. far outside the calibration
        range. Off the hot path: ``predict`` never calls it; the server does
        when asked (``--count-saturation``).
        """
        obs, _ = self._as_batch(observation)  # VecNormalize's clip already applied here
        if self._image is not None:
            return 0  # a uint8 pixel maps onto int8 exactly: nothing saturates
        q = obs.astype(np.float64) * self._a + self._b  # the coarse part, split or not
        return int(np.count_nonzero((q < INT8_MIN - 0.5) | (q > INT8_MAX + 0.5)))

    def _forward(self, flat: np.ndarray) -> np.ndarray:
        self._set(self._in_index, self.quantize(flat).reshape(self._in_shape))
        self._invoke()
        return self._get(self._out_index)[0]

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self._out_zero) * self._out_scale

    def _as_batch(self, observation: Any) -> tuple[np.ndarray, bool]:
        """Flat features (B, F) of one observation or a batch, checked (``ObservationEncoder.encode``;
        images: ``ImageObservations.as_batch``)."""
        if self._image is not None:
            return self._image.as_batch(observation)
        flat, single = self.encoder.encode(observation)
        if self._clamp is not None:  # VecNormalize's clip, in raw units (its affine part is in a and b)
            flat = np.clip(flat, self._clamp[0], self._clamp[1])
        return flat, single

    def __repr__(self) -> str:
        m = self.manifest
        return f"EdgePolicy({m.algorithm} {m.env_id}, device={self.device}, interpreter={self.backend.name})"


def _open(backend: Backend, path: Path, num_threads: int | None, delegates: list[Any] | None) -> Any:
    check_tflite_structure(path)  # the interpreter trusts the flatbuffer; a bad one can crash the process
    try:
        with quiet_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            interpreter = backend.interpreter(str(path), num_threads=num_threads, delegates=delegates)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        if delegates:
            raise DeviceError(f"the Edge TPU could not load {path.name}: {exc}") from None
        raise BundleError(f"{path.name} is not a valid TFLite model ({exc})") from None
    return interpreter
