"""Affine int8 quantization parameters and their numpy maths.

``real = scale * (q - zero_point)``: TensorFlow Lite's convention. Shared by
host validation and the device runtime. Light: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
# A value within this many int8 steps of a level is on it (float32 rounding of scales and preprocessing).
LEVEL_TOLERANCE = 1e-3
MIN_SCALE = float(np.finfo(np.float32).tiny)  # a smaller scale is not a normal float32: 1/scale overflows


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor int8 scale and zero point of a model input or output."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Round to nearest and saturate to int8, as the converter's QUANTIZE op does."""
        q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Back to float32."""
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    @property
    def representable(self) -> tuple[float, float]:
        """The real interval an int8 tensor with these parameters can hold."""
        return (
            float(self.scale * (INT8_MIN - self.zero_point)),
            float(self.scale * (INT8_MAX - self.zero_point)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> QuantParams:
        """Parse and check; raises ValueError with ``where`` in the message."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: quantization must be an object")
        scale, zp = data.get("scale"), data.get("zero_point")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not (MIN_SCALE <= scale < 1e30):
            raise ValueError(f"{where}: scale must be a positive finite number (a normal float32, TFLite's type)")
        if not isinstance(zp, int) or isinstance(zp, bool) or not INT8_MIN <= zp <= INT8_MAX:
            raise ValueError(f"{where}: zero_point must be an integer in [-128, 127]")
        return cls(scale=float(scale), zero_point=int(zp))


def split_quantize(q: np.ndarray, zero_point: int, split: int) -> np.ndarray:
    """Coarse and magnified-residual int8 parts of unrounded input levels ``q`` (see ``Preprocess``)."""
    u = q - zero_point
    coarse = np.clip(np.rint(u), INT8_MIN - zero_point, INT8_MAX - zero_point)
    fine = np.rint(split * np.clip(u - coarse, -0.5, 0.5))
    parts = np.concatenate([coarse + zero_point, np.clip(fine + zero_point, INT8_MIN, INT8_MAX)], axis=-1)
    return parts.astype(np.int8)
