"""JSON-safe descriptions of Gymnasium spaces.

The manifest carries the model's spaces so that the device can check
observations and post-process actions without gymnasium. Light: numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import BundleError

BOX = "box"
DISCRETE = "discrete"
SPACE_KINDS = (BOX, DISCRETE)
IMAGE = "image"  # observation kind: a uint8 (C, H, W) or (H, W, C) Box over 0..255, as SB3's is_image_space
UNIFORM_BOUNDS_MIN = 64  # a larger Box whose bounds are all equal writes each bound as one number (images)
MAX_UNIFORM_ELEMENTS = 1 << 22  # a bound written as one number expands to at most this many elements


@dataclass(frozen=True)
class SpaceSpec:
    """A Box (shape, dtype, bounds) or Discrete (n, start) space."""

    kind: str
    shape: tuple[int, ...]
    dtype: str
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    n: int | None = None
    start: int = 0

    @property
    def size(self) -> int:
        """Number of scalars in one element of the space (Discrete: 1)."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def low_array(self) -> np.ndarray:
        """Lower bounds, shaped like the space (Box only)."""
        return np.asarray(self.low, dtype=np.float32).reshape(self.shape)

    def high_array(self) -> np.ndarray:
        """Upper bounds, shaped like the space (Box only)."""
        return np.asarray(self.high, dtype=np.float32).reshape(self.shape)

    def describe(self) -> str:
        """Short human form, e.g. ``Box(3,)`` or ``Discrete(2)``."""
        if self.kind == DISCRETE:
            return f"Discrete({self.n})"
        return f"Box{tuple(self.shape)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the manifest (infinite bounds become strings)."""
        out: dict[str, Any] = {"kind": self.kind, "shape": list(self.shape), "dtype": self.dtype}
        if self.kind == BOX:
            out["low"] = _json_bounds(self.low or ())
            out["high"] = _json_bounds(self.high or ())
        else:
            out["n"] = self.n
            out["start"] = self.start
        return out

    @classmethod
    def from_dict(cls, data: Any) -> SpaceSpec:
        """Parse and check the manifest form; a malformed one is a BundleError."""
        if not isinstance(data, dict) or data.get("kind") not in SPACE_KINDS:
            raise BundleError(f"manifest: space must be an object with kind in {SPACE_KINDS}")
        shape = data.get("shape")
        if not isinstance(shape, list) or not all(_is_small_int(v, 1) for v in shape) or len(shape) > 8:
            raise BundleError("manifest: space shape must be a list of positive integers")
        dtype = data.get("dtype")
        if dtype not in ("float32", "float64", "int64", "int32", "uint8", "int8"):
            raise BundleError(f"manifest: unsupported space dtype {dtype!r}")
        if data["kind"] == DISCRETE:
            n, start = data.get("n"), data.get("start", 0)
            if not _is_small_int(n, 1) or not _is_small_int(start, -(2**31)):
                raise BundleError("manifest: discrete space needs a positive integer n")
            return cls(kind=DISCRETE, shape=(), dtype=dtype, n=int(n), start=int(start))
        size = math.prod(int(v) for v in shape)  # Python ints: a hostile shape cannot wrap around
        low, high = (_parse_bounds(data.get(k), size, k) for k in ("low", "high"))
        return cls(kind=BOX, shape=tuple(int(v) for v in shape), dtype=dtype, low=low, high=high)


def observation_kind(space: SpaceSpec) -> str:
    """The observation kind the support matrix names (``edgekit.support``): ``box`` is a float Box."""
    if space.kind == BOX and space.dtype.startswith("float"):
        return BOX
    if is_image(space):
        return IMAGE
    return space.kind if space.kind != BOX else f"{space.dtype} box"


def is_image(space: SpaceSpec) -> bool:
    """SB3's ``is_image_space``: a rank-3 uint8 Box with bounds 0 and 255 (either channel order)."""
    return (space.kind == BOX and space.dtype == "uint8" and len(space.shape) == 3
            and all(v == 0 for v in space.low or (1,)) and all(v == 255 for v in space.high or (0,)))


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
        if size > MAX_UNIFORM_ELEMENTS:
            raise BundleError(f"manifest: box {name} for {size} elements is too large")
        return _parse_bounds([raw], 1, name) * size
    if not isinstance(raw, list) or len(raw) != size:
        raise BundleError(f"manifest: box {name} must be a list of {size} numbers")
    out = []
    for v in raw:
        if v in ("inf", "-inf") or isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            out.append(float(v))
        else:
            raise BundleError(f"manifest: box {name} holds a non-number {v!r}")
    return tuple(out)
