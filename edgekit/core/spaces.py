"""JSON-safe descriptions of Gymnasium spaces.

The manifest carries the model's spaces so that the device can check
observations and post-process actions without gymnasium. Light: numpy only.

Kinds: ``box``, ``discrete``, ``multi_discrete`` (a 1-D ``nvec``),
``multi_binary`` and ``dict`` (an ordered tuple of named, non-nested
sub-spaces, in the order SB3's ``CombinedExtractor`` concatenates them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.errors import BundleError

BOX = "box"
DISCRETE = "discrete"
MULTI_DISCRETE = "multi_discrete"
MULTI_BINARY = "multi_binary"
DICT = "dict"
SPACE_KINDS = (BOX, DISCRETE, MULTI_DISCRETE, MULTI_BINARY, DICT)
IMAGE = "image"  # observation kind: a uint8 (C, H, W) or (H, W, C) Box over 0..255, as SB3's is_image_space
IMAGE_DICT = "dict with image keys"  # an observation kind (see observation_kind), not a space kind
UNIFORM_BOUNDS_MIN = 64  # a larger Box whose bounds are all equal writes each bound as one number (images)

MAX_FEATURES = 1 << 20  # flattened observation features a manifest may describe (the model input's bound)
MAX_DICT_KEYS = 64
MAX_KEY_LENGTH = 64
_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32",
           "uint64", "bool")


@dataclass(frozen=True)
class SpaceSpec:
    """A Box (shape, dtype, bounds), Discrete (n, start), MultiDiscrete (nvec), MultiBinary (shape) or
    Dict (named sub-spaces) space."""

    kind: str
    shape: tuple[int, ...]
    dtype: str
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    n: int | None = None
    start: int = 0
    nvec: tuple[int, ...] | None = None  # multi_discrete: classes per branch
    spaces: tuple[tuple[str, SpaceSpec], ...] | None = None  # dict: (key, sub-space) in order

    @property
    def size(self) -> int:
        """Number of scalars in one element of the space (Discrete: 1; Dict: the sum over its keys)."""
        if self.kind == DICT:
            return sum(sub.size for _key, sub in self.spaces or ())
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def features(self) -> int:
        """Width of the flat float vector SB3 feeds the network (``preprocess_obs`` then flatten /
        ``CombinedExtractor``): a one-hot per Discrete (n) and MultiDiscrete branch (sum of nvec)."""
        if self.kind == DISCRETE:
            return int(self.n or 0)
        if self.kind == MULTI_DISCRETE:
            return int(sum(self.nvec or ()))
        if self.kind == DICT:
            return sum(sub.features for _key, sub in self.spaces or ())
        return self.size

    def low_array(self) -> np.ndarray:
        """Lower bounds, shaped like the space (Box only)."""
        return np.asarray(self.low, dtype=np.float32).reshape(self.shape)

    def high_array(self) -> np.ndarray:
        """Upper bounds, shaped like the space (Box only)."""
        return np.asarray(self.high, dtype=np.float32).reshape(self.shape)

    def describe(self) -> str:
        """Short human form, e.g. ``Box(3,)``, ``Discrete(2)``, ``MultiDiscrete([3, 2])``, ``Dict(a: ...)``."""
        if self.kind == DISCRETE:
            return f"Discrete({self.n})"
        if self.kind == MULTI_DISCRETE:
            return f"MultiDiscrete({list(self.nvec or ())})"
        if self.kind == MULTI_BINARY:
            return f"MultiBinary({self.shape[0] if len(self.shape) == 1 else tuple(self.shape)})"
        if self.kind == DICT:
            return "Dict(" + ", ".join(f"{key}: {sub.describe()}" for key, sub in self.spaces or ()) + ")"
        return f"Box{tuple(self.shape)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the manifest (infinite bounds become strings)."""
        if self.kind == DICT:
            return {"kind": DICT, "spaces": [{"key": key, "space": sub.to_dict()} for key, sub in self.spaces or ()]}
        out: dict[str, Any] = {"kind": self.kind, "shape": list(self.shape), "dtype": self.dtype}
        if self.kind == BOX:
            out["low"] = _json_bounds(self.low or ())
            out["high"] = _json_bounds(self.high or ())
        elif self.kind == DISCRETE:
            out["n"] = self.n
            out["start"] = self.start
        elif self.kind == MULTI_DISCRETE:
            out["nvec"] = list(self.nvec or ())
        return out

    @classmethod
    def from_dict(cls, data: Any, nested: bool = False) -> SpaceSpec:
        """Parse and check the manifest form; a malformed one is a BundleError."""
        if not isinstance(data, dict) or data.get("kind") not in SPACE_KINDS:
            raise BundleError(f"manifest: space must be an object with kind in {SPACE_KINDS}")
        if data["kind"] == DICT:
            if nested:
                raise BundleError("manifest: a dict space cannot hold another dict space")
            return _parse_dict(data)
        shape = data.get("shape")
        if not isinstance(shape, list) or not all(_is_small_int(v, 1) for v in shape) or len(shape) > 8:
            raise BundleError("manifest: space shape must be a list of positive integers")
        dtype = data.get("dtype")
        if dtype not in _DTYPES:
            raise BundleError(f"manifest: unsupported space dtype {dtype!r}")
        size = int(np.prod(shape, dtype=np.float64)) if shape else 1
        if size > MAX_FEATURES:
            raise BundleError(f"manifest: a space of {size} values is larger than edgekit deploys")
        if data["kind"] == DISCRETE:
            n, start = data.get("n"), data.get("start", 0)
            if not _is_small_int(n, 1) or not _is_small_int(start, -(2**31)):
                raise BundleError("manifest: discrete space needs a positive integer n")
            return cls(kind=DISCRETE, shape=(), dtype=dtype, n=int(n), start=int(start))
        if data["kind"] == MULTI_DISCRETE:
            nvec = data.get("nvec")
            if len(shape) != 1 or not isinstance(nvec, list) or len(nvec) != shape[0] \
                    or not all(_is_small_int(v, 1) for v in nvec) or sum(nvec) > MAX_FEATURES:
                raise BundleError("manifest: multi_discrete space needs a 1-D shape and nvec, one positive "
                                  "integer per branch")
            return cls(kind=MULTI_DISCRETE, shape=(len(nvec),), dtype=dtype, nvec=tuple(int(v) for v in nvec))
        if data["kind"] == MULTI_BINARY:
            return cls(kind=MULTI_BINARY, shape=tuple(int(v) for v in shape), dtype=dtype)
        low, high = (_parse_bounds(data.get(k), size, k) for k in ("low", "high"))
        box = cls(kind=BOX, shape=tuple(int(v) for v in shape), dtype=dtype, low=low, high=high)
        problem = bounds_problem(box)
        if problem is not None:
            raise BundleError(f"manifest: {problem}")
        return box


def bounds_problem(space: SpaceSpec) -> str | None:
    """Why a Box's bounds cannot describe a space, or None: each ``low <= high``, neither a NaN, no
    ``low = +inf`` or ``high = -inf``, finite ones within the dtype's range (what any gymnasium Box
    holds). The manifest and the build both ask (``envs.space_spec``); a Dict asks for its keys."""
    if space.kind == DICT:
        return next((f"key {key!r}: {p}" for key, sub in space.spaces or () if (p := bounds_problem(sub))), None)
    if space.kind != BOX:
        return None
    low = np.asarray(space.low, dtype=np.float64)
    high = np.asarray(space.high, dtype=np.float64)
    dtype = np.dtype(space.dtype)
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype) if dtype.kind in "iu" else None
    smallest, largest = (float(info.min), float(info.max)) if info is not None else (0.0, 1.0)
    for name, values in (("low", low), ("high", high)):
        finite = values[np.isfinite(values)]
        if np.isnan(values).any():
            return f"{space.describe()} {name} holds NaN"
        if finite.size and (finite.min() < smallest or finite.max() > largest):
            return f"{space.describe()} {name} holds values outside the range of {dtype.name}"
        if dtype.kind != "f" and not np.isfinite(values).all():
            return f"{space.describe()} {name} holds an infinite bound for {dtype.name} values"
    if np.isposinf(low).any() or np.isneginf(high).any():
        return f"{space.describe()} has a low bound of +inf or a high bound of -inf"
    above = np.flatnonzero(low > high)
    if above.size:
        i = int(above[0])
        return f"{space.describe()} has low > high at index {i} ({low[i]:g} > {high[i]:g})"
    return None


def is_image(space: SpaceSpec) -> bool:
    """SB3's ``is_image_space``: a rank-3 uint8 Box with bounds 0 and 255 (either channel order)."""
    return (space.kind == BOX and space.dtype == "uint8" and len(space.shape) == 3
            and all(v == 0 for v in space.low or (1,)) and all(v == 255 for v in space.high or (0,)))


def observation_kind(space: SpaceSpec) -> str:
    """The observation kind the support matrix names (``edgekit.host.support_matrix``).

    ``box`` is a float Box, or a non-float one that is not an image (SB3 casts it to float);
    ``image`` is SB3's image space (CnnPolicy's input).
    """
    if space.kind == BOX:
        return IMAGE if is_image(space) else BOX
    if space.kind == DICT and any(is_image(sub) for _key, sub in space.spaces or ()):
        return IMAGE_DICT
    return space.kind


def _parse_dict(data: dict[str, Any]) -> SpaceSpec:
    entries = data.get("spaces")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_DICT_KEYS:
        raise BundleError(f"manifest: a dict space needs a list of 1 to {MAX_DICT_KEYS} sub-spaces")
    parsed: list[tuple[str, SpaceSpec]] = []
    for entry in entries:
        key = entry.get("key") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            raise BundleError(f"manifest: dict space keys must be printable strings of 1 to {MAX_KEY_LENGTH} "
                              "characters")
        parsed.append((key, SpaceSpec.from_dict(entry.get("space"), nested=True)))
    if len({key for key, _sub in parsed}) != len(parsed):
        raise BundleError("manifest: a dict space names a key twice")
    spec = SpaceSpec(kind=DICT, shape=(), dtype="", spaces=tuple(parsed))
    if spec.features > MAX_FEATURES:
        raise BundleError("manifest: the dict space is larger than edgekit deploys")
    return spec


def _is_small_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value < 2**31


def _json_float(value: float) -> float | str:
    value = float(value)
    if np.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _json_bounds(values: tuple[float, ...]) -> list[float | str] | float | str:
    """A list of bounds, or one number for a large Box whose bounds are all equal (an image's 0 and 255:
    per-pixel lists would make the manifest megabytes)."""
    if len(values) >= UNIFORM_BOUNDS_MIN and len(set(values)) == 1:
        return _json_float(values[0])
    return [_json_float(v) for v in values]


def _parse_bounds(raw: Any, size: int, name: str) -> tuple[float, ...]:
    if size >= UNIFORM_BOUNDS_MIN and not isinstance(raw, list):
        return _parse_bounds([raw], 1, name) * size  # size is bounded by MAX_FEATURES
    if not isinstance(raw, list) or len(raw) != size:
        raise BundleError(f"manifest: box {name} must be a list of {size} numbers")
    out = []
    for v in raw:
        value = _bound(v)
        if value is None:
            raise BundleError(f"manifest: box {name} holds a non-number {str(v)[:40]!r}")
        out.append(value)
    return tuple(out)


def _bound(raw: Any) -> float | None:
    """A JSON number (finite as a float) or the strings "inf" / "-inf"; None for anything else."""
    if isinstance(raw, str):
        return float(raw) if raw in ("inf", "-inf") else None
    if not isinstance(raw, (int, float)) or isinstance(raw, bool):
        return None
    try:
        value = float(raw)  # an integer beyond float64 overflows
    except OverflowError:
        return None
    return value if math.isfinite(value) else None
