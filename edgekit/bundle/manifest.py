"""The bundle manifest: the contract between the build host and the device.

Everything the runtime does is read from here, never guessed: spaces,
observation preprocessing, int8 input/output quantization, post-processing,
file hashes. The schema is versioned (``FORMAT_VERSION``); a reader refuses a
version it does not know. Light: the runtime imports it.

Schema (format version 1)::

    format            "edgekit-bundle"
    format_version    1
    created           ISO-8601 UTC time of the build
    versions          {package: version} of the build host's stack
    source            {file, sha256, algorithm, policy_class, sb3_version}
    env_id            Gymnasium id the policy was calibrated in (or module:Class)
    env               {id, module, kwargs}: how to make that env (see edgekit.core.env_spec); optional
    observation_space SpaceSpec (see edgekit.core.spaces): box | discrete | multi_discrete | multi_binary | dict;
                      images: (C, H, W) as SB3 stores it, the env's own layout and shape in preprocess.image
    action_space      SpaceSpec: box | discrete | multi_discrete | multi_binary
    output            what the network emits: actions | squashed_actions | logits | q_values | multi_logits |
                      bernoulli_logits
    postprocess       clip | unscale | argmax | multi_argmax | threshold (mirrors SB3's predict)
    preprocess        {encoding, normalize, offset, scale, split}: the observation becomes F flat float
                      features as SB3's preprocess_obs makes them (encoding: one part per space or Dict key,
                      in order, {key, kind: float | one_hot | binary, features, classes}; see
                      edgekit.core.observations), then VecNormalize's clip((x - mean) / std) if any, then
                      x' = (x - offset) / scale per feature, before quantizing (split: see Preprocess).
                      Bundles without encoding (older edgekit) have a Box observation: features = the
                      flattened Box. Image observations: {image: ImageInput (env layout, NHWC model,
                      divisor)} instead of per-feature offset and scale (both empty lists), see
                      edgekit.bundle.image_spec
    models            {"cpu": ModelEntry, "edgetpu": ModelEntry (optional)}
    files             {relative path: sha256} of every file in the bundle but the manifest
    calibration       facts about the calibration and held-out sets
    conditioning      how the float actor was rewritten for int8 (informational)
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.image_spec import ImageInput
from edgekit.bundle.layout import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST
from edgekit.core.env_spec import EnvSpec
from edgekit.core.errors import BundleError
from edgekit.core.observations import check_encoding, encoding_of, encoding_to_list
from edgekit.core.postprocess import POSTPROCESS_KINDS, postprocess_problem
from edgekit.core.quant import INT8_MAX, INT8_MIN, QuantParams
from edgekit.core.spaces import DICT, MAX_FEATURES, SpaceSpec

FORMAT = BUNDLE_FORMAT
FORMAT_VERSION = BUNDLE_FORMAT_VERSION
MANIFEST_NAME = MANIFEST
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_OBS_CLIP = 1e6  # VecNormalize's clip_obs (SB3's default: 10)
MIN_POSITIVE = 1e-30  # smallest scale or std: with int8 scales (>= float32's tiny) their product stays normal
OUTPUT_KINDS = ("actions", "squashed_actions", "logits", "q_values", "multi_logits", "bernoulli_logits")


@dataclass(frozen=True)
class TensorSpec:
    """One int8 model input or output."""

    shape: tuple[int, ...]
    dtype: str
    quant: QuantParams

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, **self.quant.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TensorSpec:
        if not isinstance(data, dict):
            raise BundleError(f"manifest: {where} must be an object")
        shape = data.get("shape")
        if not isinstance(shape, list) or not shape or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**20 for v in shape
        ):
            raise BundleError(f"manifest: {where}.shape must be a list of positive integers")
        if data.get("dtype") != "int8":
            raise BundleError(f"manifest: {where}.dtype must be int8, got {data.get('dtype')!r}")
        try:
            quant = QuantParams.from_dict(data, f"manifest: {where}")
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        return cls(shape=tuple(shape), dtype="int8", quant=quant)


@dataclass(frozen=True)
class ModelEntry:
    """A model file of the bundle and its int8 interface."""

    file: str
    input: TensorSpec
    output: TensorSpec

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "input": self.input.to_dict(), "output": self.output.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelEntry:
        if not isinstance(data, dict):
            raise BundleError(f"manifest: models.{where} must be an object")
        return cls(
            file=safe_relative_path(data.get("file"), f"models.{where}.file"),
            input=TensorSpec.from_dict(data.get("input"), f"models.{where}.input"),
            output=TensorSpec.from_dict(data.get("output"), f"models.{where}.output"),
        )


@dataclass(frozen=True)
class ObsNormalization:
    """SB3 VecNormalize's observation normalization: ``clip((x - mean) / std, -clip, clip)``, per flat feature.

    ``active`` (Dict observations, VecNormalize's ``norm_obs_keys``): which features are normalized; the
    others (keys not normalized, one-hots) pass unchanged (their mean 0 and std 1). None: every feature.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]  # sqrt(var + epsilon)
    clip: float
    active: tuple[bool, ...] | None = None

    def apply(self, obs: np.ndarray) -> np.ndarray:
        x = (np.asarray(obs, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        clipped = np.clip(x, -self.clip, self.clip)
        return clipped if self.active is None else np.where(np.asarray(self.active), clipped, x)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The clip in raw units, per feature: ``mean -/+ clip * std`` (infinite where not normalized)."""
        mean, std = np.asarray(self.mean, dtype=np.float64), np.asarray(self.std, dtype=np.float64)
        low, high = mean - self.clip * std, mean + self.clip * std
        if self.active is None:
            return low, high
        active = np.asarray(self.active)
        return np.where(active, low, -np.inf), np.where(active, high, np.inf)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": list(self.mean), "std": list(self.std), "clip": self.clip}
        if self.active is not None:
            out["active"] = list(self.active)
        return out

    @classmethod
    def from_dict(cls, data: Any, size: int) -> ObsNormalization | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BundleError("manifest: preprocess.normalize must be an object or null")
        mean = _finite_list(data.get("mean"), size, "preprocess.normalize.mean")
        std = _positive_list(data.get("std"), size, "preprocess.normalize.std")
        clip = data.get("clip")
        if not isinstance(clip, (int, float)) or isinstance(clip, bool) or not 0 < clip < MAX_OBS_CLIP:
            raise BundleError(f"manifest: preprocess.normalize.clip must be a positive number below {MAX_OBS_CLIP:g}")
        active = data.get("active")
        if active is not None:
            if not isinstance(active, list) or len(active) != size or not all(isinstance(v, bool) for v in active):
                raise BundleError(f"manifest: preprocess.normalize.active must be a list of {size} booleans")
            if any(not a and (m != 0.0 or s != 1.0) for a, m, s in zip(active, mean, std)):
                raise BundleError("manifest: features not normalized must have mean 0 and std 1")
            active = tuple(active)
        return cls(mean=mean, std=std, clip=float(clip), active=active)


@dataclass(frozen=True)
class Preprocess:
    """Per-feature affine map applied on the host side of the int8 input.

    ``x' = (x - offset) / scale``. With ``split`` = m > 0 the int8 input holds each
    feature twice: a coarse part ``round(x' / s)`` and the rounding residual
    magnified m times, ``round(m * (x' / s - round(x' / s)))`` (s: the input's
    int8 scale); the model weighs the second part by 1/m, which gives the input
    about 8 more bits of precision at the cost of one more FULLY_CONNECTED.
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    split: int = 0
    normalize: ObsNormalization | None = None  # VecNormalize, applied first
    image: ImageInput | None = None  # image observations: layout and /255 instead of offset and scale

    NOMINAL_INPUT_STEP = 2.0 / 255.0  # int8 step of [-1, 1], what conditioned inputs span

    @classmethod
    def identity(cls, size: int) -> Preprocess:
        return cls(offset=(0.0,) * size, scale=(1.0,) * size)

    @property
    def input_factor(self) -> int:
        """Model input elements per observation feature."""
        return 2 if self.split else 1

    def model_inputs(self, obs: np.ndarray, step: float = NOMINAL_INPUT_STEP) -> np.ndarray:
        """Float model inputs (B, N * input_factor) for flat observations (B, N).

        ``step`` is the int8 input step the split parts are computed with; the
        default is the nominal one used before the model (and its real step) exists.
        Image observations become the float policy's NCHW input x / divisor instead (see ``ImageInput``).
        """
        if self.image is not None:
            return self.image.policy_input(obs)
        x = self.normalize.apply(obs) if self.normalize is not None else np.asarray(obs, dtype=np.float64)
        x = (x - np.asarray(self.offset)) / np.asarray(self.scale)
        if not self.split:
            return x.astype(np.float32)
        coarse = np.rint(x / step)
        fine = np.rint(self.split * np.clip(x / step - coarse, -0.5, 0.5))
        return np.concatenate([coarse * step, fine * step], axis=-1).astype(np.float32)

    def binary_levels(self, index: list[int], quant: QuantParams) -> np.ndarray:
        """Unrounded int8 input levels (len(index), 2) of the values 0 and 1 of features ``index`` (0/1
        features: one-hot, MultiBinary; never VecNormalize'd), as the runtime computes them (the coarse part)."""
        offset = np.asarray(self.offset, dtype=np.float64)[index]
        scale = np.asarray(self.scale, dtype=np.float64)[index] * quant.scale
        return np.stack([(0.0 - offset) / scale, (1.0 - offset) / scale], axis=1) + quant.zero_point

    def binary_residuals(self, index: list[int], quant: QuantParams) -> np.ndarray:
        """(len(index), 2): how far, in input steps, what the int8 input carries for the values 0 and 1 of
        features ``index`` is from them; 0 when exact. A split input's fine part carries the coarse part's
        rounding residual in 1/split steps (a half step exactly: 127/254)."""
        u = self.binary_levels(index, quant) - quant.zero_point
        coarse = np.clip(np.rint(u), INT8_MIN - quant.zero_point, INT8_MAX - quant.zero_point)
        if not self.split:
            return np.abs(u - coarse)
        fine = np.rint(self.split * np.clip(u - coarse, -0.5, 0.5))
        return np.abs(u - coarse - fine / self.split)

    def to_dict(self) -> dict[str, Any]:
        out = {"offset": list(self.offset), "scale": list(self.scale), "split": self.split,
               "normalize": self.normalize.to_dict() if self.normalize is not None else None}
        if self.image is not None:
            out["image"] = self.image.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, size: int, policy_shape: tuple[int, ...] = ()) -> Preprocess:
        if not isinstance(data, dict):
            raise BundleError("manifest: preprocess must be an object")
        image = None if data.get("image") is None else ImageInput.from_dict(data["image"], policy_shape)
        if image is not None and (data.get("split", 0) or data.get("normalize") is not None):
            raise BundleError("manifest: image observations take no split input and no VecNormalize")
        per_feature = 0 if image is not None else size
        offset = _finite_list(data.get("offset"), per_feature, "preprocess.offset")
        scale = _positive_list(data.get("scale"), per_feature, "preprocess.scale")
        split = data.get("split", 0)
        if not isinstance(split, int) or isinstance(split, bool) or not (split == 0 or 2 <= split <= 254):
            raise BundleError("manifest: preprocess.split must be 0 or an integer in [2, 254]")
        return cls(offset=offset, scale=scale, split=split,
                   normalize=ObsNormalization.from_dict(data.get("normalize"), size), image=image)


@dataclass(frozen=True)
class Manifest:
    """The parsed, checked ``manifest.json``."""

    env_id: str
    algorithm: str
    observation_space: SpaceSpec
    action_space: SpaceSpec
    output: str
    postprocess: str
    preprocess: Preprocess
    models: dict[str, ModelEntry]
    files: dict[str, str]
    source: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    conditioning: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION
    env: EnvSpec | None = None  # id, module and kwargs; None in bundles written before it (env_id only)

    @property
    def environment(self) -> EnvSpec:
        """The env the bundle was calibrated in (``env_id`` alone for older bundles)."""
        return self.env if self.env is not None else EnvSpec(self.env_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "created": self.created,
            "versions": self.versions,
            "source": self.source,
            "env_id": self.env_id,
            "env": self.environment.to_dict(),
            "algorithm": self.algorithm,
            "observation_space": self.observation_space.to_dict(),
            "action_space": self.action_space.to_dict(),
            "output": self.output,
            "postprocess": self.postprocess,
            "preprocess": {"encoding": encoding_to_list(encoding_of(self.observation_space)),
                           **self.preprocess.to_dict()},
            "models": {k: v.to_dict() for k, v in self.models.items()},
            "files": dict(sorted(self.files.items())),
            "calibration": self.calibration,
            "conditioning": self.conditioning,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse and check every field the runtime relies on."""
        if not is_bundle_document(data):
            raise BundleError("manifest.json is not an edgekit bundle manifest")
        version = data.get("format_version")
        if type(version) is not int:  # true == 1 == 1.0 in Python: only the integer names a version
            raise BundleError(f"manifest: format_version must be an integer, got {json.dumps(version)[:40]}",
                              hint="rebuild the bundle with `edgekit build` (the manifest was edited)")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version!r} is not supported (this edgekit reads {FORMAT_VERSION})",
                hint="rebuild the bundle with this edgekit version, or install the edgekit that built it",
            )
        obs_space = SpaceSpec.from_dict(data.get("observation_space"))
        act_space = SpaceSpec.from_dict(data.get("action_space"))
        if act_space.kind == DICT:
            raise BundleError("manifest: action_space cannot be a dict")
        if not 0 < obs_space.features <= MAX_FEATURES:
            raise BundleError("manifest: the observation space has more features than edgekit deploys")
        raw_preprocess = data.get("preprocess")
        check_encoding(raw_preprocess.get("encoding") if isinstance(raw_preprocess, dict) else None, obs_space)
        output, post = data.get("output"), data.get("postprocess")
        if output not in OUTPUT_KINDS:
            raise BundleError(f"manifest: output must be one of {OUTPUT_KINDS}")
        if post not in POSTPROCESS_KINDS:
            raise BundleError(f"manifest: postprocess must be one of {POSTPROCESS_KINDS}")
        problem = postprocess_problem(post, act_space)
        if problem is not None:
            raise BundleError(f"manifest: {problem}")
        models_raw = data.get("models")
        if not isinstance(models_raw, dict) or "cpu" not in models_raw:
            raise BundleError("manifest: models must name at least the cpu model")
        models = {str(k): ModelEntry.from_dict(v, str(k)) for k, v in models_raw.items() if k in ("cpu", "edgetpu")}
        files_raw = data.get("files")
        if not isinstance(files_raw, dict):
            raise BundleError("manifest: files must be an object of path -> sha256")
        files = {safe_relative_path(k, "files"): _sha256_field(v, k) for k, v in files_raw.items()}
        width = act_space.features  # outputs per action: a value per Box entry, a logit / Q-value per choice
        for name, entry in models.items():
            if entry.file not in files:
                raise BundleError(f"manifest: the {name} model {entry.file} has no sha256 in files")
            if int(np.prod(entry.output.shape)) != width:
                raise BundleError(f"manifest: the {name} model's output {list(entry.output.shape)} does not fit "
                                  f"{act_space.describe()} ({width} outputs)")
        env_id = _str_field(data, "env_id")
        env = EnvSpec.from_dict(data.get("env"), env_id)
        if env.id != env_id:
            raise BundleError("manifest: env.id differs from env_id")
        return cls(
            env_id=env_id,
            env=env,
            algorithm=_str_field(data, "algorithm"),
            observation_space=obs_space,
            action_space=act_space,
            output=output,
            postprocess=post,
            preprocess=Preprocess.from_dict(raw_preprocess, obs_space.features, obs_space.shape),
            models=models,
            files=files,
            source=_dict_field(data, "source"),
            versions=_dict_field(data, "versions"),
            calibration=_dict_field(data, "calibration"),
            conditioning=_dict_field(data, "conditioning"),
            created=str(data.get("created", "")),
            format_version=FORMAT_VERSION,
        )

    @classmethod
    def read(cls, bundle_dir: Path) -> Manifest:
        """Read and check ``bundle_dir/manifest.json``."""
        return cls.from_dict(read_document(bundle_dir))


def is_bundle_document(data: Any) -> bool:
    """What makes a directory an edgekit bundle: its manifest is an object whose ``format`` says so (whatever
    its version). The one test of it: ``--force`` replaces only such a directory."""
    return isinstance(data, dict) and data.get("format") == FORMAT


def is_bundle(directory: Path) -> bool:
    """``directory`` holds a manifest that says it is an edgekit bundle (readable or not by this edgekit)."""
    try:
        return is_bundle_document(read_document(directory))
    except (BundleError, OSError):
        return False


def read_document(bundle_dir: Path) -> Any:
    """``bundle_dir/manifest.json`` parsed as JSON (bounded in size and depth), not yet checked."""
    path = Path(bundle_dir) / MANIFEST_NAME
    hint = "pass the directory written by `edgekit build`"
    if not Path(bundle_dir).is_dir():
        raise BundleError(f"{bundle_dir} is not a directory", hint=hint)
    if not path.is_file():
        raise BundleError(f"{bundle_dir} has no {MANIFEST_NAME}", hint=hint)
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes; refusing to parse it")
    try:
        return _parse_json_bounded(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc})") from None


def safe_relative_path(value: Any, where: str) -> str:
    """A plain relative path inside the bundle: no absolute paths, no '..'."""
    if not isinstance(value, str) or not value or len(value) > 255:
        raise BundleError(f"manifest: {where} must be a file name")
    parts = Path(value).parts
    if Path(value).is_absolute() or "\\" in value or any(p in ("..", ".") for p in parts) or ":" in value:
        raise BundleError(f"manifest: {where} path {value!r} points outside the bundle")
    return value


def _parse_json_bounded(text: str) -> Any:
    """json.loads with a sane recursion limit: another library may have raised it so far
    that a deeply nested (hostile) file would overflow the C stack instead of failing."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, 2000))
    try:
        return json.loads(text, parse_constant=_reject_constant)
    finally:
        sys.setrecursionlimit(limit)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a manifest")


def _sha256_field(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise BundleError(f"manifest: files[{name!r}] must be a hex sha256")
    return value


def _str_field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > 512:
        raise BundleError(f"manifest: {key} must be a non-empty string")
    return value


def _dict_field(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise BundleError(f"manifest: {key} must be an object")
    return value


def _positive_list(raw: Any, size: int, where: str) -> tuple[float, ...]:
    """Scales and standard deviations: the runtime divides by their product (in float64), which must
    stay finite and non-zero."""
    values = _finite_list(raw, size, where)
    if any(v < MIN_POSITIVE for v in values):
        raise BundleError(f"manifest: {where} must be positive numbers of at least {MIN_POSITIVE:g}")
    return values


def _finite_list(raw: Any, size: int, where: str) -> tuple[float, ...]:
    if not isinstance(raw, list) or len(raw) != size or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) < 1e30 for v in raw
    ):
        raise BundleError(f"manifest: {where} must be a list of {size} finite numbers")
    return tuple(float(v) for v in raw)
