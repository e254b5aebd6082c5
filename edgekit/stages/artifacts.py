"""Typed artifacts passed from one build stage to the next.

Each stage takes the artifact on its left and returns the one on its right (the first,
``LoadedAgent``, is the loader's: ``edgekit.host.loading.loaded_agent``):

    LoadedAgent -> PolicyGraph -> ObservationSets -> OnnxModel -> TFModel
                -> Int8Model -> Validation -> bundle on disk

They are frozen: a stage never changes what an earlier stage produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.bundle.image_spec import ImageInput
from edgekit.bundle.manifest import ObsNormalization, Preprocess, TensorSpec

if TYPE_CHECKING:
    import torch


IMAGE_CHUNK = 256  # images per torch call


@dataclass(frozen=True)
class PolicyGraph:
    """The deterministic actor as a torch module: flat float features (B, N) -> outputs (B, K).

    The features are the observation as SB3's preprocessing makes it (``edgekit.core.observations``):
    the flattened Box, or one-hots and 0/1 values, concatenated in Dict key order.
    """

    module: torch.nn.Module
    input_size: int
    output_size: int
    output: str  # actions | squashed_actions | logits | q_values
    postprocess: str  # clip | unscale | argmax
    normalize: ObsNormalization | None = None  # VecNormalize: applied to observations before the module
    image: ImageInput | None = None  # image observations in the env's layout -> the module's NCHW x / divisor
    rewrites: tuple[str, ...] = ()  # exact activation rewrites done at extraction (see edgekit.host.activations)
    binary_inputs: tuple[int, ...] = ()  # features that only take 0 and 1 (one-hot, MultiBinary)
    branches: tuple[tuple[int, int], ...] = ()  # multi_logits: (start, stop) of each branch's outputs

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """Run the float actor on a batch of flat observations."""

        if self.normalize is not None:
            obs = self.normalize.apply(obs).astype(np.float32)
        if self.image is not None:  # in chunks: a batch of images as float32 is large
            return np.concatenate([self._run(self.image.policy_input(obs[i:i + IMAGE_CHUNK]))
                                   for i in range(0, len(obs), IMAGE_CHUNK)])
        return self._run(obs)

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(torch.as_tensor(inputs, dtype=torch.float32)).numpy()


@dataclass(frozen=True)
class ObservationSets:
    """Calibration and held-out observations as flat float32 features (N, input_size)
    (``ObservationEncoder.encode``; ``decode`` gives the observations back); images: flat uint8, in the
    env's layout (a quarter of the memory)."""

    calibration: np.ndarray
    held_out: np.ndarray
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OnnxModel:
    """The exported ONNX file and how closely it matched torch."""

    path: Path
    opset: int
    max_abs_error: float


@dataclass(frozen=True)
class TFModel:
    """The float TensorFlow SavedModel written by onnx2tf."""

    saved_model_dir: Path
    max_abs_error: float


@dataclass(frozen=True)
class Int8Model:
    """A fully int8 TFLite model: int8 input, int8 output, int8 ops."""

    path: Path
    input: TensorSpec
    output: TensorSpec
    preprocess: Preprocess
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Validation:
    """How the int8 model compares with the float actor on held-out observations."""

    metrics: dict[str, Any]
    passed: bool
    float_outputs: np.ndarray
    int8_outputs: np.ndarray
