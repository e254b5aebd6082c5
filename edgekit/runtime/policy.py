"""``EdgePolicy``: a bundle's int8 policy on an Edge TPU or the CPU.

``predict`` does what SB3's ``model.predict(obs, deterministic=True)[0]``
does, on the int8 model: encode the observation as SB3's preprocessing does
(one-hot, concatenated Dict keys: ``edgekit.core.observations``), preprocess and
quantize it, invoke, dequantize, post-process (clip / unscale / argmax /
per-branch argmax / threshold). Every constant comes from the manifest.
Image bundles take uint8 images in the env's own layout (``runtime.image_input``).

Every model is probed in a child process before this process opens it
(``runtime.probe``): a libedgetpu that crashes, a hang, a crafted model become
a ``DeviceError`` or ``BundleError`` here, never a dead process. ``predict``
dispatches to one step chosen at load (``_choose_step``); should the Edge TPU
fail mid-run (``invoke`` raises: the stick was pulled, a brown-out), the
policy reopens the bundle's CPU int8 model, warns once, and goes on.
Imports numpy and one TFLite interpreter, nothing heavier.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.manifest import Manifest, ModelEntry
from edgekit.core.errors import BundleError, DeviceError, EdgekitError
from edgekit.core.observations import ObservationEncoder
from edgekit.core.postprocess import PostProcessor
from edgekit.core.quant import INT8_MAX, INT8_MIN, split_quantize
from edgekit.runtime.encoded_step import make_encoded_step
from edgekit.runtime.held_tensors import HeldTensors, PrivateInvokeMissing, hold_tensors
from edgekit.runtime.image_step import ImageObservations, make_image_step
from edgekit.runtime.interpreters import Backend, DeviceRequest, find_backend, load_edgetpu_delegate
from edgekit.runtime.libedgetpu import find_libedgetpu
from edgekit.runtime.model_files import open_cpu_model, open_interpreter, probe_or_raise, read_model
from edgekit.runtime.step import Step, float32_values, make_step, output_reader

StepFn = Callable[[Any], np.ndarray]
FLOAT32 = np.dtype(np.float32)


class EdgeTPUFallbackWarning(UserWarning):
    """The policy runs on the CPU int8 model instead of an Edge TPU: ``device="auto"`` found none that
    works, or the Edge TPU failed mid-run."""


class SlowPathWarning(UserWarning):
    """The interpreter lacks the private call the per-step fast path needs (``runtime.held_tensors``)."""


class EdgePolicy:
    """The deployed policy. Create it with :meth:`EdgePolicy.load`."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, entry: ModelEntry, interpreter: Any,
                 device: str, backend: Backend, cpu_fallback: Callable[[], Any] | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        self.backend = backend
        self.encoder = ObservationEncoder(manifest.observation_space)
        image = manifest.preprocess.image  # images: accepted in the env's layout, as uint8 (runtime.image_input)
        self._image = None if image is None else ImageObservations(image)
        # one observation (Box); () for Discrete, Dict; images: the env's layout
        self.observation_shape = manifest.observation_space.shape if image is None else image.shape
        self.observation_dtype = np.dtype(np.uint8 if image is not None else np.float32)
        self._post = PostProcessor(manifest.postprocess, manifest.action_space)
        self._reopen_on_cpu = cpu_fallback  # an Edge TPU policy: opens the CPU model if the TPU fails mid-run
        self.tpu_failure: str | None = None  # why the Edge TPU was left mid-run, if it was
        self.fallback_predictions = 0  # predict calls answered on the CPU since then
        self._attach(entry, interpreter, device)

    def _attach(self, entry: ModelEntry, interpreter: Any, device: str) -> None:
        """Everything that depends on the model being run: its interface, constants and step."""
        manifest, image = self.manifest, self.manifest.preprocess.image
        self.device = device  # "cpu" or the Edge TPU it runs on, e.g. "usb"
        self.model_file = entry.file
        self.entry = entry
        self._interpreter = interpreter
        in_details, out_details = interpreter.get_input_details(), interpreter.get_output_details()
        if len(in_details) != 1 or len(out_details) != 1:
            raise BundleError(f"{entry.file} has {len(in_details)} inputs and {len(out_details)} outputs; a "
                              "bundle's model has one of each")
        in_detail, out_detail = in_details[0], out_details[0]
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
        self._size = size
        self._set = interpreter.set_tensor
        self._get = interpreter.get_tensor
        try:
            held = hold_tensors(interpreter, self._in_index, self._out_index)
        except PrivateInvokeMissing as exc:
            warnings.warn(f"{exc}: predict runs the public interpreter calls, several times slower "
                          "(runtime/held_tensors.py)", SlowPathWarning, stacklevel=4)
            held = None
        self.fast_path = held is not None
        self._invoke = held.invoke if held is not None else interpreter.invoke  # invoke() refuses held views
        self._step = self._choose_step(held)

    # --- construction -------------------------------------------------------------

    @classmethod
    def load(cls, bundle_dir: str | Path, device: str = "auto", interpreter: str | None = None,
             num_threads: int | None = 1) -> EdgePolicy:
        """Open a bundle on ``device``: ``auto`` | ``cpu`` | ``usb[:N]`` | ``pci[:N]``.

        ``auto`` uses an Edge TPU when the bundle has a compiled model and
        libedgetpu opens one, else the CPU int8 model with one warning; an
        explicit TPU device that cannot be opened is an error. Each model is
        probed in a child process first (``runtime.probe``; cached).
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
        return cls(bundle_dir, manifest, entry, open_cpu_model(bundle_dir, manifest, backend, num_threads), "cpu",
                   backend)

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
        model = read_model(bundle_dir, manifest, entry.file)
        try:
            library = find_libedgetpu()
            probe_or_raise(backend, model, request, library)
            cpu = read_model(bundle_dir, manifest, manifest.models["cpu"].file)
            probe_or_raise(backend, cpu, DeviceRequest("cpu"))  # the model a mid-run failure falls back to
            delegate = load_edgetpu_delegate(backend, request, library)
            interpreter = open_interpreter(backend, model, num_threads, [delegate])
        except DeviceError as exc:
            if explicit:
                raise
            warnings.warn(f"{exc.message}; running the int8 model on the CPU", EdgeTPUFallbackWarning, stacklevel=3)
            return None

        def reopen_on_cpu() -> tuple[ModelEntry, Any]:
            return manifest.models["cpu"], open_cpu_model(bundle_dir, manifest, backend, num_threads, probe=False)

        return cls(bundle_dir, manifest, entry, interpreter, request.delegate_device or "tpu", backend,
                   cpu_fallback=reopen_on_cpu)

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

    def _choose_step(self, held: HeldTensors | None) -> StepFn:
        """The one function ``predict`` calls, chosen here once per model: a single observation as the env
        returns it goes down a fast step (``runtime.step`` for a Box, ``encoded_step`` for the encoded spaces,
        ``image_input`` for images); anything else (batches, JSON lists of other spaces, bad values, which it
        also words) takes ``_predict_general``."""
        general = self._predict_general
        if held is None:
            return general
        ndarray, action_shape, post = np.ndarray, self.manifest.action_space.shape, self._post
        if self._image is not None:
            image_step = make_image_step(held, self._image.image, post, self._dequantize, action_shape)
            shape, uint8 = self.observation_shape, np.uint8

            def image(observation: Any) -> np.ndarray:
                if type(observation) is ndarray and observation.shape == shape and observation.dtype == uint8:
                    return image_step(observation)
                return general(observation)

            return image
        step = make_step(held, self._a, self._b, post, self._dequantize, action_shape, split=self._split,
                         zero_point=self._zero, clamp=self._clamp)
        if self.encoder.identity:
            return _box_dispatch(step, self.observation_shape, general)
        direct = None  # one observation straight to int8 levels (not with a split input)
        if not self._split and self._clamp is None:
            read = output_reader(held.output, post, self._dequantize, action_shape)
            direct = make_encoded_step(held, self._a, self._b, self.encoder, read)
        encode, array_step = self.encoder.encode, step.array

        def encoded(observation: Any) -> np.ndarray:
            if direct is not None:
                action = direct(observation)
                if action is not None:
                    return action
            flat, single = encode(observation)  # batches, JSON lists, and the errors
            if single:
                return array_step(flat[0])
            return post(self._dequantize(np.stack([self._forward(row) for row in flat])))

        return encoded

    # --- inference ----------------------------------------------------------------

    def predict(self, observation: Any) -> np.ndarray:
        """One action for one observation, or a batch of actions for a batch.

        Shaped and typed like SB3's ``model.predict(obs, deterministic=True)[0]``.
        """
        try:
            return self._step(observation)
        except RuntimeError as exc:  # the interpreter's Invoke failed (no other step code raises it)
            return self._invoke_failed(exc, observation)

    def _predict_general(self, observation: Any) -> np.ndarray:
        obs, single = self._as_batch(observation)
        if single:
            return self._post.one(self._dequantize(self._forward(obs[0])))
        raw = np.stack([self._forward(row) for row in obs])
        return self._post(self._dequantize(raw))

    def _invoke_failed(self, exc: RuntimeError, observation: Any) -> np.ndarray:
        """An Edge TPU that fails mid-run: reopen on the CPU model, warn once, answer. On the CPU: an error."""
        if type(exc) is not RuntimeError:  # RecursionError, NotImplementedError: not the interpreter's
            raise exc
        if self._reopen_on_cpu is None:
            raise self._run_error(exc) from None
        reason = " ".join(str(exc).split())[:300] or "invoke() failed"
        reopen, self._reopen_on_cpu = self._reopen_on_cpu, None
        failed_on = self.device
        entry, interpreter = reopen()
        self._attach(entry, interpreter, "cpu")
        self.tpu_failure = f"the Edge TPU ({failed_on}) failed mid-run: {reason}"
        self._step = self._counted(self._step)
        warnings.warn(f"{self.tpu_failure}; switched to the bundle's CPU int8 model", EdgeTPUFallbackWarning,
                      stacklevel=3)
        return self.predict(observation)

    def _counted(self, step: StepFn) -> StepFn:
        """``step``, counting the calls answered on the CPU after the Edge TPU failed."""

        def counting(observation: Any) -> np.ndarray:
            self.fallback_predictions += 1
            return step(observation)

        return counting

    def predict_outputs(self, observation: Any) -> np.ndarray:
        """The dequantized raw network outputs (B, K) for a batch: Q-values, logits, actions."""
        obs, _ = self._as_batch(observation)
        try:
            return self._dequantize(np.stack([self._forward(row) for row in obs]))
        except RuntimeError as exc:
            raise self._run_error(exc) from None

    def invoke_int8(self, q: np.ndarray) -> np.ndarray:
        """Run the model on an already-quantized input (benchmarks, verification)."""
        self._set(self._in_index, q.reshape(self._in_shape))
        try:
            self._invoke()
        except RuntimeError as exc:
            raise self._run_error(exc) from None
        return self._get(self._out_index)[0]

    def _run_error(self, exc: RuntimeError) -> EdgekitError:
        reason = " ".join(str(exc).split())[:300] or "invoke() failed"
        if self.device != "cpu":
            return DeviceError(f"the Edge TPU ({self.device}) failed: {reason}", hint="replug the accelerator, or "
                               "use --device cpu")
        return BundleError(f"the interpreter failed to run {self.model_file}: {reason}",
                           hint="the model may be damaged or crafted: rebuild the bundle, or copy it again")

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


def _box_dispatch(step: Step, shape: tuple[int, ...], general: StepFn) -> StepFn:
    """A Box observation: an ndarray of its shape to the step (as float32, what SB3 and the general path
    compute on); a flat JSON list of numbers, as float32 values, to a scalar step; anything else to the
    general path."""
    ndarray, array_step, values_step, float32 = np.ndarray, step.array, step.values, FLOAT32
    if values_step is None:
        def box(observation: Any) -> np.ndarray:
            if type(observation) is ndarray and observation.shape == shape:
                return array_step(observation if observation.dtype is float32 else observation.astype(float32))
            return general(observation)

        return box
    size = shape[0] if len(shape) == 1 else -1  # only flat observations come as flat lists

    def box_values(observation: Any) -> np.ndarray:
        kind = type(observation)
        if kind is ndarray and observation.shape == shape:
            if observation.dtype is not float32:
                observation = observation.astype(float32)
            return values_step(observation.tolist() if size >= 0 else observation.reshape(-1).tolist())
        if kind is list and len(observation) == size:
            values = float32_values(observation)
            if values is not None:
                return values_step(values)
        return general(observation)

    return box_values
