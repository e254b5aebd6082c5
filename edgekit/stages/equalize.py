"""Cross-layer equalization: per-tensor int8 weights for layers whose channels differ by 10-100x.

The Edge TPU takes one int8 scale per FULLY_CONNECTED weight tensor, set by its
largest weight. Published off-policy actors (SAC, TQC on MuJoCo) have a few
hidden units with outgoing weights 10-30x the median (HalfCheetah's second layer:
largest column 18, median column 1.6), so most weights of that layer fall on a
handful of int8 levels, and their rounding alone costs 4-10 % of the action range.

A ReLU is positively homogeneous, relu(z / s) = relu(z) / s, so unit k of a
hidden layer can be scaled by 1/s_k (its row and bias in the layer before) and
its column in the layer after by s_k without changing the function. Choosing
s_k = sqrt(r_in_k / r_out_k) (r: the largest magnitude of the row, and of the
column) gives both the same range sqrt(r_in_k r_out_k): the layers' extremes
are spread over the channels that had small ones (Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", ICCV 2019).
Repeated over every ReLU between two Linear layers until the scales settle.

Exact in float; the activations' ranges change with it (widening's pieces give
each unit the levels its range reaches), so ``condition`` keeps it only where
the int8 simulation says it pays. Tanh hidden layers are not homogeneous and
are left as they are.
"""

from __future__ import annotations

import copy
from typing import Any

from edgekit.stages.int8sim import body_layers

ROUNDS = 20
MAX_FACTOR = 1e3  # no unit is scaled by more than this (units whose weights are all ~0 would explode)


def equalizable_pairs(actor: Any) -> list[tuple[Any, Any]]:
    """(layer before, layer after) around each ReLU of the body (the last one's "after" is the head)."""
    from torch import nn

    layers = body_layers(actor) + [actor.head]
    pairs = []
    for i in range(1, len(layers) - 1):
        if type(layers[i]) is nn.ReLU and isinstance(layers[i - 1], nn.Linear) and isinstance(layers[i + 1], nn.Linear):
            pairs.append((layers[i - 1], layers[i + 1]))
    return pairs


def equalize(actor: Any) -> Any:
    """An equalized copy of ``actor`` (the same function in float), or ``actor`` itself if nothing applies."""
    import torch

    if not equalizable_pairs(actor):
        return actor
    out = copy.deepcopy(actor)
    with torch.no_grad():
        for _ in range(ROUNDS):
            for before, after in equalizable_pairs(out):
                rows = before.weight.abs().amax(dim=1).double()
                cols = after.weight.abs().amax(dim=0).double()
                scale = torch.sqrt(rows / cols.clamp_min(1e-12)).clamp(1.0 / MAX_FACTOR, MAX_FACTOR)
                scale = torch.where((rows > 0) & (cols > 0), scale, torch.ones_like(scale))
                before.weight.div_(scale[:, None].float())
                before.bias.div_(scale.float())
                after.weight.mul_(scale[None, :].float())
    return out
