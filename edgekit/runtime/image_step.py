"""Image observations on the device: as the env returns them -> the int8 model's NHWC input.

The manifest's ``preprocess.image`` (``edgekit.bundle.image_spec.ImageInput``) says
which layout the env returns (HWC, or CHW) and that the model takes NHWC int8
with zero point -128, so a pixel's int8 value is ``x - 128`` exactly: one
numpy op (``x ^ 0x80`` is ``x - 128`` in int8 bits), written straight into the
interpreter's input tensor on the per-step path, transposing CHW on the way.
Imports numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit.bundle.image_spec import HWC, ImageInput
from edgekit.core.errors import InputError
from edgekit.core.postprocess import MULTI_ARGMAX, PostProcessor
from edgekit.runtime.held_tensors import HeldTensors
from edgekit.runtime.step import StepFn, branch_picker, lookup_table

SIGN_BIT = 0x80  # uint8 x ^ 0x80, read as int8, is x - 128


class ImageObservations:
    """Checks image observations and turns them into int8 model inputs."""

    def __init__(self, image: ImageInput) -> None:
        self.image = image
        self.shape = image.shape

    def as_batch(self, observation: Any) -> tuple[np.ndarray, bool]:
        """(B, H, W, C) uint8 and whether one observation was given; a wrong shape or dtype is an InputError."""
        obs = observation if isinstance(observation, np.ndarray) else _array(observation)
        if obs.dtype != np.uint8:
            obs = _pixels(obs)
        if obs.shape == self.shape:
            single = True
        elif obs.ndim == 4 and obs.shape[1:] == self.shape:
            single = False
        else:
            raise InputError(f"observation shape {obs.shape} does not fit the policy's {self.image.layout} images "
                             f"{self.shape} (or a batch (B, {', '.join(map(str, self.shape))}))")
        return self.image.nhwc(obs), single

    @staticmethod
    def quantize(row: np.ndarray) -> np.ndarray:
        """One (H, W, C) uint8 image -> int8 ``x - 128``."""
        return np.bitwise_xor(row, SIGN_BIT, dtype=np.uint8).view(np.int8)


def _array(observation: Any) -> np.ndarray:
    try:
        return np.asarray(observation)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"observation is not numeric: {exc}") from None


def _pixels(obs: np.ndarray) -> np.ndarray:
    """Whole numbers in 0..255 of another dtype (e.g. JSON lists) as uint8; anything else is refused."""
    if obs.dtype.kind not in "iuf":
        raise InputError(f"image observations must be uint8 pixels, got dtype {obs.dtype}")
    if obs.size and not (np.isfinite(obs).all() and obs.min() >= 0 and obs.max() <= 255
                         and np.array_equal(obs, np.rint(obs))):
        raise InputError(f"image observations must be uint8 pixels (whole numbers 0..255), got {obs.dtype} "
                         "values outside them")
    return obs.astype(np.uint8)


def make_image_step(held: HeldTensors, image: ImageInput, post: PostProcessor,
                    dequantize: Callable[[np.ndarray], np.ndarray], action_shape: tuple[int, ...]) -> StepFn:
    """``step(observation) -> action`` for one uint8 image of ``image.shape`` (the caller checks shape and dtype).

    Uses the same zero-copy tensor views and output lookup table as ``runtime.step``.
    """
    invoke = held.invoke
    in_view = held.input.view(np.uint8).reshape(image.hwc)
    out_view = held.output
    table = lookup_table(post, dequantize, out_view.size) if post.elementwise else None
    pick = branch_picker(out_view, post.branches) if post.kind == MULTI_ARGMAX else None
    columns = np.arange(out_view.size)
    start = post.start
    hwc = image.layout == HWC
    xor = np.bitwise_xor

    def step(observation: np.ndarray) -> np.ndarray:
        xor(observation if hwc else observation.transpose(1, 2, 0), SIGN_BIT, out=in_view)
        invoke()
        if table is None:
            return pick() if pick is not None else np.array(int(out_view.argmax()) + start, dtype=np.int64)
        return table[columns, out_view].reshape(action_shape)

    return step
