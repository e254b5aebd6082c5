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
  made the output step coarser than the gaps between actions, and the centred
  outputs are clamped at ±c (c: their 99.5th percentile of magnitude, raised if
  needed so that the best two actions almost never both reach it): argmax only
  needs the order, and rare states with huge gaps (a pole about to fall) no
  longer stretch the output step over ±50 when typical gaps are 0.1; for
  MultiDiscrete logits, centred per branch (each branch's argmax is unchanged);
* **Bernoulli logits** (MultiBinary): left as they are: the action is the sign,
  and int8 holds 0 exactly (the converter always puts 0 on a level), so
  centring would change decisions.

Features that only take 0 and 1 (one-hot Discrete / MultiDiscrete, MultiBinary)
get a fixed map instead of their calibration range, chosen so that 0 and 1 land
on exact int8 levels. The other features span exactly the int8 grid of step
s = 2/255 with zero point 0 (see ``_fold_input_scaling``): 0 and 1 become
-/+ ``BINARY_LEVEL`` = 254/255 = 127 s, exact levels 254 steps apart. Without
such features (only 0/1 ones) the input spans [0, 1]: 0 and 1 stay as they are,
levels -128 and 127. ``stages/quantize.py`` checks the levels after conversion.
Image observations (CnnPolicy) skip the per-feature input map: the int8 input is
the pixel itself (``edgekit.bundle.image_spec``).

Then, for MLP actors the int8 simulation covers (``int8sim.supported``; others,
e.g. CNN feature extractors, skip these steps), four measured steps, each kept
only if it lowers the simulated error (``score.FidelityScore``) on calibration
rows it was not fitted on:

* **split input** (``Preprocess.split``): each feature as a coarse int8 value and
  its rounding residual x16, through one FULLY_CONNECTED (``split_input_linear``);
* **per-channel weights** (``channels``): every Linear layer as a 1x1 CONV_2D,
  whose int8 weights get one scale per output row, tried where that lowers the
  error of the weights' rounding (heavy-tailed weight tensors: off-policy MuJoCo
  actors), and, for the layers that still round too coarsely, coarse + fine
  weights (two convolutions and an ADD); the next steps run on each layout in
  turn and the best is kept (``_best_layout``);
* **int8-aware distillation** (``finetune``);
* **widening** (``widen``): pieces / dithered copies for more levels per hidden
  activation and per squashed action.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgekit.bundle.manifest import Preprocess
from edgekit.core.postprocess import ARGMAX, CLIP, MULTI_ARGMAX, THRESHOLD, UNSCALE
from edgekit.core.spaces import SpaceSpec
from edgekit.host.actor import replace_first_linear, split_input_linear
from edgekit.stages.artifacts import ObservationSets, PolicyGraph
from edgekit.stages.channels import is_fine, learned_layers, to_channels, uses_channels, with_fine_layers
from edgekit.stages.finetune import finetune
from edgekit.stages.int8sim import ACTIVATIONS, INPUT, WEIGHTS, QuantSim, layer_step
from edgekit.stages.int8sim import supported as simulation_supported
from edgekit.stages.score import FidelityScore
from edgekit.stages.widen import choose as choose_widening

SQUASH_LIMIT = 4.0  # tanh(4) = 0.99933
# Split the input only when the simulation says it lowers the int8 error by at least 10 %.
SPLIT_WHEN_BETTER_BY = 0.9
# Per-channel weights (1x1 convolutions) only when the weights' rounding alone costs at least this share of the
# targets and per-channel scales lower it by at least 10 %: below, the per-tensor FULLY_CONNECTED model (the
# layout the Edge TPU is known to compile for MLPs) is kept.
PER_CHANNEL_FROM = 0.25
PER_CHANNEL_WHEN_BETTER_BY = 0.9
# A layer's weights as coarse + fine int8 parts (two convolutions and an ADD) when that lowers the simulated error
# by at least 10 %: it adds an int8 rounding of the coarse part's output.
FINE_WHEN_BETTER_BY = 0.9
WEIGHTS_LR = 1e-3  # the weights-only distillation's learning rate (Adam, cosine-decayed)
# Distillation after widening: full steps up to 150 k weights, proportionally fewer above (build time).
FULL_STEPS_UP_TO = 150_000
MIN_STEPS_AFTER_WIDENING = 500
# The measured steps stop once the simulated int8 error is at this share of the targets (1.0 = at them):
# the held-out observations of a build err more than the calibration rows the simulation scores.
EARLY_STOP_AT = 0.5
ARGMAX_CLAMP_PERCENTILE = 99.5  # centred Q-values / logits are clamped at this percentile of their magnitude
ARGMAX_TIE_PERCENTILE = 99.9  # ... or above this percentile of the second-best centred output
MIN_FEATURE_SPAN = 1e-6
MAX_FINITE_BOUND = 1e6
BINARY_LEVEL = 254.0 / 255.0  # a 0/1 feature's 1 (and -0 for its 0) as the model takes it: 127 steps of 2/255


@dataclass(frozen=True)
class ConditioningOptions:
    """Which rewrites to apply (all on by default; off reproduces a plain conversion)."""

    input_scaling: bool = True
    output_range: bool = True
    finetune: bool = True
    finetune_steps: int = 2000
    input_split: int = 16  # 0: one int8 part per feature; m: coarse + residual x m (about 4 more bits)
    force_split: bool = False  # split even where the simulation sees no gain (tests, comparisons)
    per_channel: bool = True  # 1x1 convolutions with per-channel weights where the simulation says they pay
    widen: bool = True


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
        # ranges would not fold into a convolution exactly, and the int8 simulation covers MLPs only
        preprocess = Preprocess(offset=(), scale=(), image=graph.image)
        applied["image_input"] = (f"int8 input = pixel - 128 (x/{graph.image.divisor:g} folded into the input "
                                  "scale); per-feature input scaling, split input and finetune skipped for the CNN")
    with torch.no_grad():
        if options.input_scaling and graph.image is None:
            preprocess = _fold_input_scaling(actor, model_inputs(sets.calibration, preprocess), graph.normalize,
                                             graph.binary_inputs)
            applied["input_scaling"] = "per-feature calibration range -> the int8 input range, folded into layer 1"
            if graph.binary_inputs:
                centred = preprocess.offset[graph.binary_inputs[0]] != 0.0
                applied["binary_inputs"] = (f"{len(graph.binary_inputs)} one-hot / binary features: 0 and 1 on "
                                            "exact int8 levels " + ("(-/+254/255, 254 input steps apart)" if centred
                                                                     else "(-128 and 127)"))
        if options.output_range:
            postprocess = _fold_output_range(actor, graph, model_inputs(sets.calibration, preprocess),
                                             action_space, applied)
    measured = options.input_split or options.finetune or options.widen or options.per_channel
    if simulation_supported(actor):
        with torch.no_grad():  # the float actor the measured steps imitate in int8
            teacher = actor(torch.as_tensor(model_inputs(sets.calibration, preprocess))).numpy()
        if measured:
            actor, preprocess = _measured_steps(actor, graph, sets, preprocess, postprocess, options, applied)
            with torch.no_grad():  # the fine layers' offsets from every calibration row (``FineChannelLinear``)
                QuantSim(actor).calibrate(torch.as_tensor(model_inputs(sets.calibration, preprocess)))
        applied["simulated_fidelity"] = _verdict(actor, teacher, graph, sets, preprocess, postprocess)
    elif measured:
        applied["measured_steps"] = "skipped: the int8 simulation covers MLP actors only"
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


def _measured_steps(actor: Any, graph: PolicyGraph, sets: ObservationSets, preprocess: Preprocess,
                    postprocess: str, options: ConditioningOptions, applied: dict[str, Any]
                    ) -> tuple[Any, Preprocess]:
    """Split input, distillation, widening: each tried on the int8 simulation, kept where it pays, and none
    run once the simulated error is at ``EARLY_STOP_AT`` of the targets (build time)."""
    import torch

    inputs = model_inputs(sets.calibration, preprocess)
    with torch.no_grad():
        targets = actor(torch.as_tensor(inputs)).numpy()
    score = _score(targets, graph, sets, postprocess)
    now = score.of(actor, inputs)
    if not options.force_split and _met(now, "the range conditioning", applied):  # _met records the stop
        return actor, preprocess
    if options.input_split and options.input_scaling:
        actor, preprocess, inputs, now = _split_step(actor, sets, preprocess, inputs, score, now, options, applied)
    if _met(now, "the input split", applied):
        return actor, preprocess
    candidates = _weight_layouts(actor, inputs, score, applied) if options.per_channel else []
    if not candidates:
        return _distil_and_widen(actor, inputs, targets, score, options, applied), preprocess
    return _best_layout([("per-tensor", actor, {}), *candidates], inputs, targets, score, options, applied), \
        preprocess


def _distil_and_widen(actor: Any, inputs: np.ndarray, targets: np.ndarray, score: FidelityScore,
                      options: ConditioningOptions, applied: dict[str, Any]) -> Any:
    """The weights-only distillation, widening and the bounded distillation, each skipped once the simulated
    error is at ``EARLY_STOP_AT`` of the targets."""
    if options.finetune:  # first the weights alone, freely: widening cannot remove their rounding
        actor = _distil(actor, inputs, targets, score, options.finetune_steps, "finetune_weights", applied,
                        weights_only=True, max_steps_moved=None, lr=WEIGHTS_LR, relative_lr=False, patience=None)
        if _met(score.of(actor, inputs), "the weights-only distillation", applied):
            return actor
    widened_params = None
    if options.widen:
        widened = choose_widening(actor, inputs, score)
        actor = widened.actor
        widened_params = widened.params_after if widened.kept else None
        applied["widen"] = widened.describe() if widened.kept else \
            f"not widened (simulated error {widened.score_before:.3g} of the target)"
        if _met(widened.score_after, "widening", applied):
            return actor
    if options.finetune:  # then everything, each weight within one int8 step of where it is
        steps = _bounded_steps(options.finetune_steps, widened_params or 0)
        actor = _distil(actor, inputs, targets, score, steps, "finetune", applied)
    return actor


def _best_layout(candidates: list[tuple[str, Any, dict[str, Any]]], inputs: np.ndarray, targets: np.ndarray,
                 score: FidelityScore, options: ConditioningOptions, applied: dict[str, Any]) -> Any:
    """The remaining steps on each weight layout in turn (per-tensor first: the layout the Edge TPU is known to
    compile); the first whose simulated error ends at ``EARLY_STOP_AT`` of the targets is kept, else the one
    with the lowest. Which layout pays is only known at the end: per-channel and fine weights bound the
    distillations' moves to their finer steps and fine parts leave widening's ReLU pieces less to gain (the
    example PPO Pendulum: 0.46 of the targets per-tensor, 0.53 per-channel; an RL Zoo TQC
    MountainCarContinuous agent: 0.40 per-channel, 1.37 with fine weights; a SAC HalfCheetah one: 1.25 with
    fine weights, more without)."""
    results: list[tuple[float, str, Any, dict[str, Any]]] = []
    for name, actor, record in candidates:
        record = dict(record)
        if not _met(score.of(actor, inputs), name + " weights", record):
            actor = _distil_and_widen(actor, inputs, targets, score, options, record)
        results.append((score.of(actor, inputs), name, actor, record))
        if results[-1][0] <= EARLY_STOP_AT:
            break
    error, name, actor, record = min(results, key=lambda r: r[0]) if results[-1][0] > EARLY_STOP_AT else results[-1]
    tried = ", ".join(f"{n} {e:.3g}" for e, n, _, _ in results)
    applied["weight_layout"] = f"simulated int8 error after the remaining steps: {tried}; kept {name}"
    applied.update(record)
    return actor


def _verdict(actor: Any, teacher: np.ndarray, graph: PolicyGraph, sets: ObservationSets, preprocess: Preprocess,
             postprocess: str) -> str:
    """The simulated error against the float actor before the measured steps (``teacher``: its outputs on the
    calibration rows), on the rows nothing was fitted on (``FidelityScore.val_rows``: after a distillation,
    its training rows would hide how its weights generalize); where it misses the targets, what causes it:
    the error with only the weights, only the activations, only the input rounded (distilled weights lie on
    their grid: what they do differently from the float actor counts as the weights' rounding)."""
    score = _score(teacher, graph, sets, postprocess)
    inputs = model_inputs(sets.calibration, preprocess)
    total = score.of(actor, inputs)
    where = "on calibration observations no step was fitted on"
    if total <= 1.0:
        return f"{total:.3g} of the targets {where} (met, in simulation)"
    weights = score.of(actor, inputs, parts=frozenset((WEIGHTS,)))
    with_activations = score.of(actor, inputs, parts=frozenset((WEIGHTS, ACTIVATIONS)))
    added = {"the weights": weights, "the activations": with_activations - weights,
             "the input": total - with_activations}
    worst = max(added, key=added.get)
    why = f"most from rounding {worst}"
    if worst == "the weights":
        kind = "per-channel" if uses_channels(actor) else "per-tensor"
        why += f" ({kind} int8 weights; {_weight_spread(actor)})"
    return (f"{total:.3g} of the targets {where}: NOT met, {why}; the int8 weights alone {weights:.3g}, "
            f"with the activations rounded too {with_activations:.3g}, with the input too {total:.3g}")


def _weight_spread(actor: Any) -> str:
    """The layer whose weights are spread widest: the median magnitude of its non-zero weights, in int8 steps
    of its scale (per tensor, or per row for a per-channel layer; the output-copy average, a fixed 0 / 1/m
    matrix, is not a learned layer)."""
    spreads = []
    layers = [m for m in QuantSim(actor).linears if m is not actor.tail]
    for i, layer in enumerate(layers):
        if is_fine(layer):  # about 8 bits finer than its coarse grid: not the spread that limits
            continue
        w = layer.weight.detach().abs()
        steps = w / layer_step(layer)
        nonzero = steps[w > 0]
        if nonzero.numel():
            spreads.append((float(nonzero.median()), i))
    if not spreads:
        return "every layer's weights as coarse + fine int8 parts"
    steps, i = min(spreads)
    return f"layer {i + 1}'s median weight is {steps:.1f} int8 steps"


def _met(now: float, after: str, applied: dict[str, Any]) -> bool:
    """Whether the simulated error is low enough to skip the remaining steps (and say so)."""
    if now > EARLY_STOP_AT:
        return False
    applied["early_stop"] = (f"after {after}: simulated int8 error {now:.3g} of the targets (<= {EARLY_STOP_AT:g}); "
                             "the remaining steps skipped")
    return True


def _split_step(actor: Any, sets: ObservationSets, preprocess: Preprocess, inputs: np.ndarray,
                score: FidelityScore, now: float, options: ConditioningOptions, applied: dict[str, Any]
                ) -> tuple[Any, Preprocess, np.ndarray, float]:
    """Split the input where it lowers the error of the input and activations' rounding: the split's cost,
    its first layer's weights ``W / 16`` on the same int8 grid, is the distillation's to remove, so a
    comparison with the weights rounded would decide on an error the next step takes away (a TQC Pendulum
    agent: 4.9 plain vs 5.8 split with the weights rounded, not split, and its input rounding alone was
    then 2.3 of the targets at the end)."""
    split_actor = copy.deepcopy(actor)
    replace_first_linear(split_actor, split_input_linear(split_actor.first_linear(), options.input_split))
    split_pre = replace(preprocess, split=options.input_split)
    split_inputs = model_inputs(sets.calibration, split_pre)
    parts = frozenset((INPUT, ACTIVATIONS))
    plain, with_split = score.of(actor, inputs, parts=parts), score.of(split_actor, split_inputs, parts=parts)
    take = options.force_split or with_split < SPLIT_WHEN_BETTER_BY * plain
    applied["input_split_decision"] = (f"simulated int8 error of the input and activations {plain:.3g} plain vs "
                                       f"{with_split:.3g} split (1.0 = at the targets): "
                                       f"{'split' if take else 'not split'}")
    if not take:
        return actor, preprocess, inputs, now
    applied["input_split"] = (f"each feature as coarse + residual x{options.input_split} int8 parts "
                              "through one layer (about 4 more bits of input)")
    return split_actor, split_pre, split_inputs, score.of(split_actor, split_inputs)


def _weight_layouts(actor: Any, inputs: np.ndarray, score: FidelityScore,
                    applied: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    """The per-channel layouts worth trying besides per-tensor weights: every Linear layer as a per-channel 1x1
    convolution, where that lowers the error of the weights' rounding alone (the one error it changes; the
    others are the later steps' to remove) and that error matters (``PER_CHANNEL_FROM``); then, if some layers
    still round too coarsely, those with coarse + fine weights (``_fine_step``). Scored on every calibration
    row: nothing is fitted to them."""
    channels = to_channels(actor)
    weights = frozenset((WEIGHTS,))
    plain = score.of(actor, inputs, all_rows=True, parts=weights)
    per_channel = score.of(channels, inputs, all_rows=True, parts=weights)
    take = plain >= PER_CHANNEL_FROM and per_channel < PER_CHANNEL_WHEN_BETTER_BY * plain
    applied["per_channel_decision"] = (f"simulated int8 error of the weights' rounding alone {plain:.3g} per-tensor "
                                       f"vs {per_channel:.3g} per-channel (1.0 = at the targets): "
                                       f"{'try per-channel' if take else 'per-tensor'}")
    if not take:
        return []
    record = {"per_channel_weights": "every Linear layer as a 1x1 CONV_2D with one int8 weight scale per output "
                                     "channel (not verified on a real Edge TPU)"}
    layouts = [("per-channel", channels, record)]
    fine = _fine_step(channels, inputs, score, applied)
    if fine is not None:
        layouts.append(("coarse + fine", fine[0], {**record, "fine_weights": fine[1]}))
    return layouts


def _fine_step(actor: Any, inputs: np.ndarray, score: FidelityScore,
               applied: dict[str, Any]) -> tuple[Any, str] | None:
    """A variant of the per-channel ``actor`` whose layers that still round too coarsely take coarse + fine
    int8 weights, or None: each round tries every remaining layer and keeps the best if it lowers the
    simulated error (everything rounded, every calibration row: nothing is fitted) by
    ``FINE_WHEN_BETTER_BY``; rounds until none does."""
    start = best = score.of(actor, inputs, all_rows=True)
    chosen: list[int] = []
    remaining = list(range(len(learned_layers(actor))))
    while remaining:
        value, index = min((score.of(with_fine_layers(actor, chosen + [i]), inputs, all_rows=True), i)
                           for i in remaining)
        if not value < FINE_WHEN_BETTER_BY * best:
            break
        chosen.append(index)
        remaining.remove(index)
        best = value
    applied["fine_weights_decision"] = (f"simulated int8 error {start:.3g} per-channel, {best:.3g} with coarse + "
                                        f"fine weights in {len(chosen)} of {len(learned_layers(actor))} layers")
    if not chosen:
        return None
    return with_fine_layers(actor, chosen), (
        f"layer{'s' if len(chosen) > 1 else ''} {', '.join(str(i + 1) for i in sorted(chosen))}: int8 weights as "
        "coarse + fine parts (two 1x1 CONV_2D and an ADD; not verified on a real Edge TPU)")


def _bounded_steps(steps: int, params: int) -> int:
    """Fewer distillation steps for widened actors above ``FULL_STEPS_UP_TO`` weights (build time)."""
    if params <= FULL_STEPS_UP_TO:
        return steps
    return max(MIN_STEPS_AFTER_WIDENING, int(steps * FULL_STEPS_UP_TO / params))


def _distil(actor: Any, inputs: np.ndarray, targets: np.ndarray, score: FidelityScore, steps: int, key: str,
            applied: dict[str, Any], **kwargs: Any) -> Any:
    result = finetune(actor, inputs, targets, score, steps=steps, stop_at=EARLY_STOP_AT, **kwargs)
    what = "weights only, " if kwargs.get("weights_only") else ""
    ran = f"{result.steps} of {steps} steps, stopped: {result.stopped}" if result.stopped else f"{result.steps} steps"
    applied[key] = (f"int8-aware distillation ({what}{ran}): simulated error "
                    f"{result.score_before:.3g} -> {result.score_after:.3g} of the target "
                    f"({'kept' if result.kept else 'discarded'})")
    return result.actor


def _score(targets: np.ndarray, graph: PolicyGraph, sets: ObservationSets, postprocess: str) -> FidelityScore:
    if postprocess == ARGMAX:
        return FidelityScore.build(targets, discrete=True, span=1.0, policy_outputs=graph.outputs(sets.calibration))
    if postprocess == UNSCALE:  # outputs normalized to [-1, 1] over the action range
        return FidelityScore.build(targets, discrete=False, span=2.0)
    spread = float(np.percentile(targets, 99) - np.percentile(targets, 1))
    return FidelityScore.build(targets, discrete=False, span=max(spread, 1e-6))


def model_inputs(obs: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Observations as the conditioned model takes them (float32)."""
    return preprocess.model_inputs(obs)


def _fold_input_scaling(actor: Any, calibration: np.ndarray, normalize: Any,
                        binary: tuple[int, ...] = ()) -> Preprocess:
    import torch

    low, high = calibration.min(axis=0).astype(np.float64), calibration.max(axis=0).astype(np.float64)
    half = (high - low) / 2.0
    varied = half > MIN_FEATURE_SPAN
    # a feature calibration never saw change (contact forces at rest, a lidar ray that never hit) gets the
    # widest feature's scale, what one shared input scale would give it: with a zero-width range it saturated
    # at its first change (RL Zoo Ant agents: p99 error 10-13 % instead of 1-2 % naive)
    scale = np.where(varied, half, float(half[varied].max()) if varied.any() else 1.0)
    # [low, high] -> [-128, 127] int8 steps of 2/255 exactly (zero point 0): the converter then picks
    # the nominal step, so that the split parts computed before conversion lie on its grid
    offset = (low + high) / 2.0 + scale / 255.0
    if binary:  # a fixed map, not the calibration range: 0 and 1 on exact int8 levels (see the module docstring)
        index = np.asarray(binary, dtype=np.int64)
        others = np.ones(len(offset), dtype=bool)
        others[index] = False
        spanning = bool(np.any((high - low)[others] / 2.0 > MIN_FEATURE_SPAN))  # the input then spans the grid
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


def _argmax_clamp(centred: np.ndarray) -> float:
    """Where to clamp centred outputs (B, K): small enough for a fine output step, large enough that
    the best two actions (almost) never both reach it, which would turn a choice into a tie."""
    c = float(np.percentile(np.abs(centred), ARGMAX_CLAMP_PERCENTILE))
    if centred.shape[1] > 2:
        second = np.sort(centred, axis=1)[:, -2]
        c = max(c, 1.05 * float(np.percentile(second, ARGMAX_TIE_PERCENTILE)))
    return max(c, 1e-6)


def _fold_output_range(actor: Any, graph: PolicyGraph, inputs: np.ndarray, action_space: SpaceSpec,
                       applied: dict[str, Any]) -> str:
    """``inputs``: calibration observations as the (input-folded) actor takes them."""
    import torch

    head = actor.head
    if graph.postprocess == ARGMAX:
        head.weight.sub_(head.weight.mean(dim=0, keepdim=True))
        head.bias.sub_(head.bias.mean())
        c = _argmax_clamp(actor(torch.as_tensor(inputs, dtype=torch.float32)).numpy())
        head.weight.div_(c)
        head.bias.div_(c)
        actor.clamp = True
        applied["output_range"] = (f"{graph.output} centred over actions and clamped at ±{c:.3g} "
                                   "(argmax unchanged)")
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
