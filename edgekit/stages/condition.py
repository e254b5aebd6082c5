"""Stage: condition the float actor for int8, without changing what it decides.

Post-training int8 gives every tensor one scale for its whole range, so the
ranges the converter sees decide the precision. This stage rewrites a *copy*
of the actor so that its int8 tensors use their 256 levels where it matters,
and every rewrite is exact in float (or bounded, and then measured):

* **input**: each observation feature is mapped to [-1, 1] over its
  calibration range on the host side (``Preprocess``) and the inverse is folded
  into the first Linear layer (W' = W diag(s), b' = b + W o). Features with
  small ranges (Pendulum's cos/sin next to its velocity) no longer share a
  scale sized for the largest;
* **clipped Box actions** (PPO, A2C): SB3 clips to [low, high] anyway, so the
  head is folded to (y - centre) / half-range and clamped to [-1, 1] in the
  graph (a fused RELU_N1_TO_1); the output step then spans the action range
  instead of the raw mean's, and post-processing becomes ``unscale``;
* **tanh-squashed actions** (SAC, TD3, DDPG): the pre-tanh value is clamped to
  ±k (k from the calibration range, at most ``SQUASH_LIMIT``, where tanh is
  flat within 0.07 % of the range), folded the same way; saturating actors no
  longer stretch the last layer's scale over ±90;
* **Q-values and logits**: the mean over actions is subtracted inside the head
  (argmax and softmax are unchanged), removing the large common offset that
  made the output step coarser than the gaps between actions; for MultiDiscrete
  logits, per branch (each branch's argmax is unchanged);
* **Bernoulli logits** (MultiBinary): left as they are: the action is the sign,
  and int8 holds 0 exactly (the converter always puts 0 on a level), so
  centring would change decisions.

Features that only take 0 and 1 (one-hot Discrete / MultiDiscrete, MultiBinary)
get a fixed map instead of their calibration range, chosen so that 0 and 1 land
on exact int8 levels. The other features span exactly [-1, 1] (their
calibration extremes), so the int8 input step is s = 2/255 and real 0 is a level
(the converter puts the zero point there): 0 and 1 become -/+ ``BINARY_LEVEL`` =
254/255 = 127 s, exact levels 254 steps apart whether the zero point is 0 or -1.
Without such features (only 0/1 ones) the input spans [0, 1]: 0 and 1 stay as
they are, levels -128 and 127. ``stages/quantize.py`` checks the levels after
conversion.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgekit.actor import SplitInputLinear, replace_first_linear
from edgekit.artifacts import ObservationSets, PolicyGraph
from edgekit.bundle.manifest import Preprocess
from edgekit.postprocess import ARGMAX, CLIP, MULTI_ARGMAX, THRESHOLD, UNSCALE
from edgekit.spaces import SpaceSpec
from edgekit.stages.finetune import finetune, split_gain
from edgekit.stages.finetune import supported as finetune_supported

SQUASH_LIMIT = 4.0  # tanh(4) = 0.99933
# Split the input only when the simulation says it lowers the int8 error by at least 10 %.
SPLIT_WHEN_BETTER_BY = 0.9
MIN_FEATURE_SPAN = 1e-6
MAX_FINITE_BOUND = 1e6
BINARY_LEVEL = 254.0 / 255.0  # a 0/1 feature's 1 (and -0 for its 0) as the model takes it: 127 steps of 2/255


@dataclass(frozen=True)
class ConditioningOptions:
    """Which rewrites to apply (all on by default; off reproduces a plain conversion)."""

    input_scaling: bool = True
    output_range: bool = True
    finetune: bool = True
    finetune_steps: int = 400
    input_split: int = 254  # 0: one int8 part per feature; m: coarse + residual x m (about 16-bit input)
    force_split: bool = False  # split even where the simulation sees no gain (tests, comparisons)


@dataclass(frozen=True)
class Conditioned:
    """The conditioned actor, the host-side preprocessing it expects, and what was done."""

    graph: PolicyGraph
    preprocess: Preprocess
    applied: dict[str, Any] = field(default_factory=dict)


def condition(graph: PolicyGraph, sets: ObservationSets, action_space: SpaceSpec,
              options: ConditioningOptions | None = None) -> Conditioned:
    """Return a rewritten copy of ``graph``; the original is left untouched."""
    import torch

    options = options or ConditioningOptions()
    actor = copy.deepcopy(graph.module).eval()
    applied: dict[str, Any] = {}
    preprocess = replace(Preprocess.identity(graph.input_size), normalize=graph.normalize)
    postprocess = graph.postprocess
    if graph.rewrites:
        applied["activations"] = "; ".join(graph.rewrites) + " (exact)"
    if graph.normalize is not None:
        applied["vecnormalize"] = (f"observations normalized as in training (clip ±{graph.normalize.clip:g}), "
                                   "on the host")
    if graph.image is not None:  # images: the int8 input is the pixel itself (x / divisor, exact); per-pixel
        # ranges would not fold into a convolution exactly, and the int8 simulation below covers MLPs only
        preprocess = Preprocess(offset=(), scale=(), image=graph.image)
        applied["image_input"] = (f"int8 input = pixel - 128 (x/{graph.image.divisor:g} folded into the input "
                                  "scale); per-feature input scaling, split input and finetune skipped for the CNN")
    with torch.no_grad():
        if options.input_scaling and graph.image is None:
            preprocess = _fold_input_scaling(actor, model_inputs(sets.calibration, preprocess), graph.normalize,
                                             graph.binary_inputs)
            applied["input_scaling"] = "per-feature calibration range -> [-1, 1], folded into the first layer"
            if graph.binary_inputs:
                centred = preprocess.offset[graph.binary_inputs[0]] != 0.0
                applied["binary_inputs"] = (f"{len(graph.binary_inputs)} one-hot / binary features: 0 and 1 on "
                                            "exact int8 levels " + ("(-/+254/255, 254 input steps apart)" if centred
                                                                     else "(-128 and 127)"))
        if options.output_range:
            postprocess = _fold_output_range(actor, graph, model_inputs(sets.calibration, preprocess),
                                             action_space, applied)
    split = 0
    if options.input_split and options.input_scaling and finetune_supported(actor):
        plain, with_split = split_gain(actor, model_inputs(sets.calibration, preprocess))
        split = options.input_split if options.force_split or with_split < SPLIT_WHEN_BETTER_BY * plain else 0
        applied["input_split_decision"] = (f"simulated int8 error {plain:.3g} plain vs {with_split:.3g} split: "
                                           + ("split" if split else "not split"))
    if options.finetune and finetune_supported(actor):
        inputs = model_inputs(sets.calibration, preprocess)
        with torch.no_grad():
            targets = actor(torch.as_tensor(inputs)).numpy()
        result = finetune(actor, inputs, targets, steps=options.finetune_steps, split_input=bool(split))
        actor = result.actor
        applied["finetune"] = (
            f"int8-aware distillation, {result.steps} steps: simulated output MSE "
            f"{result.error_before:.3g} -> {result.error_after:.3g} ({'kept' if result.kept else 'discarded'})"
        )
    if split:
        replace_first_linear(actor, SplitInputLinear(actor.first_linear(), split))
        preprocess = replace(preprocess, split=split)
        applied["input_split"] = f"each feature as coarse + residual x{split} int8 parts (about 16-bit input)"
    conditioned = PolicyGraph(
        module=actor,
        input_size=graph.input_size * preprocess.input_factor,
        output_size=graph.output_size,
        output=graph.output,
        postprocess=postprocess,
        binary_inputs=graph.binary_inputs,
        branches=graph.branches,
    )
    return Conditioned(graph=conditioned, preprocess=preprocess, applied=applied)


def model_inputs(obs: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Observations as the conditioned model takes them (float32)."""
    return preprocess.model_inputs(obs)


def _fold_input_scaling(actor: Any, calibration: np.ndarray, normalize: Any,
                        binary: tuple[int, ...] = ()) -> Preprocess:
    import torch

    low, high = calibration.min(axis=0).astype(np.float64), calibration.max(axis=0).astype(np.float64)
    offset = (low + high) / 2.0
    scale = np.maximum((high - low) / 2.0, MIN_FEATURE_SPAN)
    if binary:  # a fixed map, not the calibration range: 0 and 1 on exact int8 levels (see the module docstring)
        index = np.asarray(binary, dtype=np.int64)
        others = np.ones(len(offset), dtype=bool)
        others[index] = False
        spanning = bool(np.any((high - low)[others] / 2.0 > MIN_FEATURE_SPAN))  # the input then spans [-1, 1]
        offset[index] = 0.5 if spanning else 0.0
        scale[index] = 0.5 / BINARY_LEVEL if spanning else 1.0
    first = actor.first_linear()
    w = first.weight.double()
    s = torch.as_tensor(scale, dtype=torch.float64)
    o = torch.as_tensor(offset, dtype=torch.float64)
    first.bias.copy_((first.bias.double() + w @ o).float())
    first.weight.copy_((w * s[None, :]).float())
    return Preprocess(offset=tuple(float(v) for v in offset), scale=tuple(float(v) for v in scale),
                      normalize=normalize)


def _fold_output_range(actor: Any, graph: PolicyGraph, inputs: np.ndarray, action_space: SpaceSpec,
                       applied: dict[str, Any]) -> str:
    """``inputs``: calibration observations as the (input-folded) actor takes them."""
    import torch

    head = actor.head
    if graph.postprocess == ARGMAX:
        head.weight.sub_(head.weight.mean(dim=0, keepdim=True))
        head.bias.sub_(head.bias.mean())
        applied["output_range"] = f"{graph.output} centred over actions (argmax unchanged)"
        return ARGMAX
    if graph.postprocess == MULTI_ARGMAX:
        for lo, hi in graph.branches:
            head.weight[lo:hi].sub_(head.weight[lo:hi].mean(dim=0, keepdim=True))
            head.bias[lo:hi].sub_(head.bias[lo:hi].mean())
        applied["output_range"] = (f"{graph.output} centred per branch ({len(graph.branches)} branches; "
                                   "argmax unchanged)")
        return MULTI_ARGMAX
    if graph.postprocess == THRESHOLD:
        applied["output_range"] = f"{graph.output} kept as they are (the sign decides; int8 holds 0 exactly)"
        return THRESHOLD
    if graph.postprocess == CLIP:
        low, high = action_space.low_array().reshape(-1), action_space.high_array().reshape(-1)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))
                and np.all(np.abs(low) < MAX_FINITE_BOUND) and np.all(np.abs(high) < MAX_FINITE_BOUND)):
            return CLIP  # unbounded actions: nothing to clip against
        centre = torch.as_tensor((low + high) / 2.0, dtype=torch.float32)
        half = torch.as_tensor((high - low) / 2.0, dtype=torch.float32)
        head.weight.div_(half[:, None])
        head.bias.sub_(centre).div_(half)
        actor.clamp = True
        applied["output_range"] = "clip to the action bounds folded into the head (output in [-1, 1])"
        return UNSCALE
    # tanh-squashed: bound the pre-tanh range the last layer must represent
    with torch.no_grad():
        z = actor.pre_squash(torch.as_tensor(inputs, dtype=torch.float32)).abs()
    k = float(min(max(float(z.max()), 1e-3) * 1.01, SQUASH_LIMIT))
    if actor.pre_clip is not None:  # the trained clip (gSDE's clip_mean) bounds it too; ±k then implies it
        k = min(k, actor.pre_clip)
        actor.pre_clip = None
    head.weight.div_(k)
    head.bias.div_(k)
    actor.clamp = True
    actor.squash_gain = k
    applied["output_range"] = f"pre-tanh value clamped to ±{k:.3g} (seen up to ±{float(z.max()):.3g})"
    return UNSCALE
