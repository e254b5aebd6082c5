"""Widening: more int8 levels per hidden activation, with every op still an int8 FULLY_CONNECTED.

An int8 tensor has 256 levels over its calibrated range, shared by all units of
a layer. Widening gives a layer's units log2(m) more bits by spreading each
unit over m int8 values that the next layer sums (its weights repeat the
original column, scaled), so the function computed is the same:

* **ReLU units -> pieces** (exact in float): relu(z) over [0, R] is the sum of
  the pieces clamp(z - kR/m, 0, R/m), k = 0..m-1, each a FULLY_CONNECTED output
  with its bias shifted by -kR/m and a fused RELU6 (the rows are scaled by 6m/R
  so the upper clamp is RELU6's, and the calibrated range is exactly [0, 6]:
  256 levels over R/m). R is the layer's largest activation on the calibration
  set; a unit whose own range is smaller gets only the pieces it reaches (plus
  ``PIECE_HEADROOM``), so narrow units cost no extra parameters.
* **Tanh units -> dithered copies**: TANH's output grid is fixed (1/128), so
  pieces do not apply; m copies of the unit whose biases differ by 1/m of the
  pre-activation's int8 step round differently, and their average (the next
  layer's weights / m) is a finer quantizer of tanh(z) (Hermite's identity),
  exact to second order in the offset.
* **squashed actions (SAC, TD3, DDPG) -> dithered output copies**: the pre-tanh
  output gets the same treatment and a final FULLY_CONNECTED (``tail``)
  averages the m tanh outputs.

Costs: a hidden-to-hidden layer grows with the product of the two layers'
widths, so ``choose`` tries a few plans, cheapest first, within a parameter
budget (the Edge TPU's 8 MiB cache holds about 8 M int8 weights; CPU latency
grows with the size), stops once the simulated error is well inside the
targets, and takes the cheapest plan within 5 % of the best it saw. Weights that lie on
their int8 grid (after ``finetune``) stay on it: every column or row of a
layer is scaled by the same factor (per-tensor and per-channel grids alike), and
every new layer is of its original's kind (``stages/channels.py``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.stages.channels import ChannelLinear, fit_coarse_activations, is_per_channel, like
from edgekit.stages.int8sim import body_layers, supported
from edgekit.stages.score import FidelityScore

RELU6_TOP = 6.0
PIECE_HEADROOM = 1.25  # pieces per unit cover 25 % above the unit's calibrated maximum
MAX_COPIES = 8
OUTPUT_COPIES = 4
PARAM_GROWTH = 16  # at most 16x the original parameter count ...
MAX_PARAMS = 1_000_000  # ... and at most 1 M weights (1 MiB of int8), unless the actor was larger already
GOOD_ENOUGH = 0.25  # stop widening once the simulated error is at a quarter of the targets
MIN_GAIN = 0.05  # a doubling must lower the simulated error by 5 %


@dataclass(frozen=True)
class WidenPlan:
    """Int8 values per unit, per hidden layer, and copies of each squashed output."""

    copies: tuple[int, ...]
    output_copies: int = 1

    @property
    def is_identity(self) -> bool:
        return all(m == 1 for m in self.copies) and self.output_copies == 1

    def describe(self, activations: list[str]) -> str:
        parts = [f"{m} {'pieces' if act == 'ReLU' else 'copies'}" for m, act in zip(self.copies, activations)
                 if m > 1]
        if self.output_copies > 1:
            parts.append(f"{self.output_copies} output copies")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class WidenResult:
    actor: Any
    plan: WidenPlan
    score_before: float
    score_after: float
    params_before: int
    params_after: int
    activations: tuple[str, ...]

    @property
    def kept(self) -> bool:
        return not self.plan.is_identity

    def describe(self) -> str:
        return (f"{self.plan.describe(list(self.activations))}: simulated error {self.score_before:.3g} -> "
                f"{self.score_after:.3g} of the target, {self.params_before} -> {self.params_after} weights")


def hidden_activations(actor: Any) -> list[str]:
    """The activation class name of each hidden layer ("ReLU", "Tanh", "ReLU6")."""
    from torch import nn

    return [type(m).__name__ for m in body_layers(actor) if not isinstance(m, nn.Linear)]


def parameter_count(actor: Any) -> int:
    from torch import nn

    linears = [m for m in body_layers(actor) if isinstance(m, nn.Linear)] + [actor.head]
    if actor.tail is not None:
        linears.append(actor.tail)
    return int(sum(m.weight.numel() for m in linears))


def choose(actor: Any, inputs: np.ndarray, score: FidelityScore) -> WidenResult:
    """Widen ``actor`` where the int8 simulation pays: the cheapest candidate plan (m per hidden layer: the
    last one alone, the first one alone, or all of them) within ``MIN_GAIN`` of the best one inside the
    budget.

    Widening fits nothing to the calibration rows (they only set ranges, as they do for the converter),
    so candidates are scored on all of them: four times the rows of a held-back split, a steadier p99."""
    acts = hidden_activations(actor)
    base_params = parameter_count(actor)
    identity = WidenPlan(copies=(1,) * len(acts))
    before = score.of(actor, inputs, all_rows=True)
    if before <= GOOD_ENOUGH or not acts or not supported(actor) or any(a not in ("ReLU", "Tanh") for a in acts):
        return WidenResult(actor, identity, before, before, base_params, base_params, tuple(acts))
    budget = max(base_params, min(PARAM_GROWTH * base_params, MAX_PARAMS))
    trials: list[tuple[float, int, WidenPlan, Any]] = [(before, base_params, identity, actor)]
    for plan in _candidates(actor, len(acts)):
        widened = widen(actor, plan, inputs)
        params = parameter_count(widened)
        if params <= budget:
            trials.append((score.of(widened, inputs, all_rows=True), params, plan, widened))
        if trials[-1][0] <= GOOD_ENOUGH:
            break  # candidates come cheapest first: no need to pay for more
    best = min(t[0] for t in trials)
    value, params, plan, chosen = min((t for t in trials if t[0] <= best / (1.0 - MIN_GAIN)), key=lambda t: t[1])
    return WidenResult(chosen, plan, before, value, base_params, params, tuple(acts))


def _candidates(actor: Any, layers: int) -> list[WidenPlan]:
    """Cheapest first, for m = 2, 4, 8: the last hidden layer alone, the first one alone, every hidden layer;
    squashed actions also get output copies. The first layer alone is for actors whose first layer's
    activations lose the most (VecNormalize'd inputs of +-10 put a Tanh layer's pre-activations at +-38:
    it needs 8 copies, its neighbour none)."""
    outputs = OUTPUT_COPIES if actor.squash and actor.clamp else 1
    plans = [WidenPlan((1,) * layers, outputs)] if outputs > 1 else []
    for m in (2, 4, MAX_COPIES):
        plans.append(WidenPlan((1,) * (layers - 1) + (m,), outputs))
        if layers > 1:
            plans.append(WidenPlan((m,) + (1,) * (layers - 1), outputs))
            plans.append(WidenPlan((m,) * layers, outputs))
    return plans


def widen(actor: Any, plan: WidenPlan, inputs: np.ndarray) -> Any:
    """A widened copy of ``actor``; ``inputs``: calibration inputs (model inputs), which set the ranges."""
    import torch

    with torch.no_grad():
        return _widen(actor, plan, inputs)


def _widen(actor: Any, plan: WidenPlan, inputs: np.ndarray) -> Any:
    import torch
    from torch import nn

    layers = body_layers(actor)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    acts = [m for m in layers if not isinstance(m, nn.Linear)]
    h = actor.features_extractor(torch.as_tensor(inputs, dtype=torch.float32)).double()
    columns: tuple[np.ndarray, np.ndarray] | None = None  # previous layer's new units: (original unit, factor)
    new_layers: list[nn.Module] = []
    for layer, act, m in zip(linears, acts, plan.copies):
        w, b = _expand_columns(layer, columns)
        z = h @ w.T + b
        if isinstance(act, nn.ReLU) and m > 1:
            w, b, columns, out_act = _pieces(w, b, z, m)
        elif m > 1:
            w, b, columns = _copies(w, b, z, m, relu=isinstance(act, nn.ReLU))
            out_act = type(act)()
        else:
            columns, out_act = None, type(act)()
        lin = like(layer, w, b)
        new_layers += [lin, out_act]
        h = out_act(lin(h.float())).double()
    out = copy.deepcopy(actor)
    out.body = nn.Sequential(*new_layers)
    w, b = _expand_columns(actor.head, columns)
    if plan.output_copies > 1:
        z = torch.clamp(h @ w.T + b, -1.0, 1.0) if actor.clamp else h @ w.T + b
        w, b, _ = _copies(w, b, z, plan.output_copies, relu=False)
        out.tail = _average(actor.head, plan.output_copies)
    out.head = like(actor.head, w, b)
    fit_coarse_activations(out)
    return out.eval()


def _expand_columns(layer: Any, columns: tuple[np.ndarray, np.ndarray] | None) -> tuple[Any, Any]:
    import torch

    w = layer.weight.detach().double()
    b = layer.bias.detach().double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if columns is None:
        return w, b
    unit, factor = columns
    return w[:, torch.as_tensor(unit)] * torch.as_tensor(factor)[None, :], b


def _pieces(w: Any, b: Any, z: Any, m: int) -> tuple[Any, Any, tuple[np.ndarray, np.ndarray], Any]:
    """m pieces of width R/m per ReLU unit (only those its range reaches), rows scaled so RELU6 caps them."""
    import torch
    from torch import nn

    top = torch.relu(z).max(dim=0).values.numpy()
    width = max(float(top.max()), 1e-9) / m
    gain = RELU6_TOP / width
    rows, biases, units = [], [], []
    for u in range(w.shape[0]):
        reach = min(m, max(1, math.ceil(PIECE_HEADROOM * float(top[u]) / width - 1e-9)))
        for k in range(reach):
            rows.append(w[u] * gain)
            biases.append((b[u] - k * width) * gain)
            units.append(u)
    factor = np.full(len(units), 1.0 / gain)
    return torch.stack(rows), torch.stack(biases), (np.asarray(units), factor), nn.ReLU6()


def _copies(w: Any, b: Any, z: Any, m: int, relu: bool) -> tuple[Any, Any, tuple[np.ndarray, np.ndarray]]:
    """m copies per unit, biases offset by 1/m of the output's int8 step (centred on the original)."""
    import torch

    zz = torch.relu(z) if relu else z
    step = (max(float(zz.max()), 0.0) - min(float(zz.min()), 0.0)) / 255.0
    offsets = ((torch.arange(m, dtype=torch.float64) + 0.5) / m - 0.5) * step
    rows = w.repeat_interleave(m, dim=0)
    biases = (b[:, None] + offsets[None, :]).reshape(-1)
    units = np.repeat(np.arange(w.shape[0]), m)
    return rows, biases, (units, np.full(len(units), 1.0 / m))


def _average(head: Any, m: int) -> Any:
    """The tail averaging m copies of each of ``head``'s outputs, per-channel if the head is (its weights,
    0 and 1/m, are exact either way)."""
    import torch
    from torch import nn

    size = head.out_features
    kind = ChannelLinear if is_per_channel(head) else nn.Linear
    return like(kind(1, 1), torch.repeat_interleave(torch.eye(size), m, dim=1) / m, torch.zeros(size))
