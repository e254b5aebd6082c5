"""Image observations: the layout the env returns, the layout the model takes, the /255.

SB3 stores image observation spaces channel-first (C, H, W): an env that returns
channel-last (H, W, C) images is wrapped in ``VecTransposeImage`` and the saved
space is the transposed one. Its ``NatureCNN`` sees ``x / 255`` when the policy
has ``normalize_images=True`` (the default), ``x`` otherwise. The int8 model
takes NHWC images (the Edge TPU's natural input, what onnx2tf makes of an NCHW
ONNX input), with input scale ``1 / divisor`` and zero point -128, so the int8
input of a uint8 pixel is exactly ``x - 128`` whatever the divisor.

``ImageInput`` is the manifest's record of all that (``preprocess.image``):
nothing about the layout is guessed on the device. Light: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.errors import BundleError

HWC, CHW = "HWC", "CHW"
MODEL_LAYOUT = "NHWC"
ZERO_POINT = -128  # int8 = uint8 - 128: exact for either divisor
DIVISORS = (255.0, 1.0)  # normalize_images on / off


@dataclass(frozen=True)
class ImageInput:
    """How an image observation, as the env returns it, becomes the int8 model's NHWC input."""

    layout: str  # HWC | CHW: the observation as the env returns it (what the runtime accepts)
    shape: tuple[int, int, int]  # the env's observation shape, in ``layout``
    divisor: float = 255.0  # the policy's float input is x / divisor (255: SB3's normalize_images)
    transposed: bool = False  # SB3 wrapped the env in VecTransposeImage (HWC env, CHW policy)

    @property
    def hwc(self) -> tuple[int, int, int]:
        """(H, W, C): the model's input without its batch dimension."""
        if self.layout == HWC:
            return self.shape
        c, h, w = self.shape
        return (h, w, c)

    @property
    def chw(self) -> tuple[int, int, int]:
        """(C, H, W): the observation as SB3's policy takes it."""
        h, w, c = self.hwc
        return (c, h, w)

    @property
    def scale(self) -> float:
        """The int8 input scale that makes ``q = x - 128`` exact."""
        return 1.0 / self.divisor

    def nhwc(self, obs: np.ndarray) -> np.ndarray:
        """A batch (B, *shape) in the env's layout -> (B, H, W, C), same dtype (a view when HWC)."""
        obs = np.asarray(obs).reshape(-1, *self.shape)
        return obs if self.layout == HWC else obs.transpose(0, 2, 3, 1)

    def policy_input(self, obs: np.ndarray) -> np.ndarray:
        """Observations (B, ...) in the env's layout -> the float policy's NCHW input x / divisor (float32)."""
        batch = np.asarray(obs).reshape(-1, *self.shape)
        chw = batch if self.layout == CHW else batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(chw, dtype=np.float32) / np.float32(self.divisor)

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "shape": list(self.shape), "model_layout": MODEL_LAYOUT,
                "divisor": self.divisor, "transposed": self.transposed, "zero_point": ZERO_POINT}

    @classmethod
    def from_dict(cls, data: Any, policy_shape: tuple[int, ...]) -> ImageInput:
        """Parse and check against the policy's (C, H, W) observation space."""
        if not isinstance(data, dict):
            raise BundleError("manifest: preprocess.image must be an object")
        layout, shape, divisor = data.get("layout"), data.get("shape"), data.get("divisor")
        if layout not in (HWC, CHW) or data.get("model_layout") != MODEL_LAYOUT:
            raise BundleError(f"manifest: preprocess.image needs layout HWC or CHW and model_layout {MODEL_LAYOUT}")
        if not isinstance(shape, list) or len(shape) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**16 for v in shape):
            raise BundleError("manifest: preprocess.image.shape must be three positive integers")
        if divisor not in DIVISORS or isinstance(divisor, bool) or data.get("zero_point", ZERO_POINT) != ZERO_POINT:
            raise BundleError("manifest: preprocess.image.divisor must be 255 or 1 (zero point -128)")
        transposed = data.get("transposed", False)
        if not isinstance(transposed, bool):
            raise BundleError("manifest: preprocess.image.transposed must be true or false")
        image = cls(layout=layout, shape=(shape[0], shape[1], shape[2]), divisor=float(divisor), transposed=transposed)
        if image.chw != tuple(policy_shape):
            raise BundleError(f"manifest: preprocess.image {layout} {tuple(shape)} does not fit the observation "
                              f"space {tuple(policy_shape)}")
        return image


def env_layout(policy_shape: tuple[int, ...], env_shape: tuple[int, ...]) -> str | None:
    """CHW when the env returns the policy's (C, H, W) shape, HWC when it returns (H, W, C) (SB3 transposed
    it, as ``VecTransposeImage`` does), None when neither."""
    if len(policy_shape) != 3 or len(env_shape) != 3:
        return None
    if tuple(env_shape) == tuple(policy_shape):
        return CHW
    c, h, w = policy_shape
    return HWC if tuple(env_shape) == (h, w, c) else None
