"""Per-channel int8 weights on the Edge TPU: every Linear layer of the actor as a 1x1 CONV_2D.

The Edge TPU takes one int8 scale per FULLY_CONNECTED weight tensor, so a
layer whose rows differ in size rounds most of its weights to a few int8 steps
(SAC / TQC MuJoCo actors: the median weight of a 256x256 hidden layer is 1-2
steps of the tensor's scale, 12-15 steps of its own row's). A 1x1 CONV_2D on a
``[1, 1, 1, N]`` tensor computes the same sums and the converter quantizes its
filter per output channel, one scale per row: what Coral's compiler maps for
every post-training-quantized TF2 conv model.

``ChannelLinear`` is an ``nn.Linear`` in everything but its ONNX export: there
it takes a ``[B, N]`` or ``[B, N, 1, 1]`` input and emits ``[B, M, 1, 1]``
(onnx2tf makes that NHWC ``[1, 1, 1, M]``, the TFLite converter turns its
trivial transposes into RESHAPEs), so activations between two such layers stay
4-D and the actor reshapes its output back to ``[B, M]`` (``DeterministicActor``).

All or nothing: TensorFlow 2.21's quantizer ignores the switch that would keep
dense layers per-tensor while convolutions go per-channel
(``_experimental_disable_per_channel_quantization_for_dense_layers``: its
FULLY_CONNECTED weights came out per-channel, measured), and per-channel
FULLY_CONNECTED weights are not known to compile for the Edge TPU. So either
every Linear layer (hidden, head, the squash gain and the averaging tail)
becomes a per-channel 1x1 CONV_2D and the converter quantizes per channel, or
none does and the model stays per-tensor FULLY_CONNECTED. A FULLY_CONNECTED
behind a CONV_2D would also take a rank-4 input (the converter removes a
RESHAPE in front of FULLY_CONNECTED), which the Edge TPU check flags.

Not verified on a real Edge TPU here (no compiler, no device): the structure
(ops, int8 types, shapes of rank <= 3 in the innermost dimensions) is what
``edgekit check`` predicts maps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ChannelLinear(nn.Linear):
    """A Linear layer whose export is a 1x1 CONV_2D, so its int8 weights get one scale per output row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return nn.functional.linear(x, self.weight, self.bias)
        x4 = x if x.dim() == 4 else x.reshape(-1, int(self.in_features), 1, 1)
        return nn.functional.conv2d(x4, self.weight[:, :, None, None], self.bias)


class FineChannelLinear(ChannelLinear):
    """A per-channel layer whose weights are split into a coarse int8 part (the weights on their per-channel grid)
    and a fine one (the rounding residual, on its own per-channel grid, about 8 bits finer): two 1x1 CONV_2D on
    the same input, summed by an ADD (which takes the activation after it, fused). The weights then round
    about 250 times finer; the price is one more int8 rounding, of the coarse part's output on its own range.

    Before a ReLU the coarse output is kept on the ReLU's range: relu(z_c + d) + (z_f - d) then goes through
    the ReLU, with d per channel at least the largest |z_f| (``offset``, set by the int8 simulation's
    calibration), which is exactly relu(z_c + z_f): below -d the coarse part is 0 and z_f - d <= 0. Without
    that, the coarse output would span the pre-activation's whole range (``int8sim`` models both)."""

    coarse_relu: bool = False
    offset: torch.Tensor | None = None  # d per output channel; None: 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """What the int8 model computes before its rounding, in float too (the export is checked against it):
        the weights as coarse + fine, the coarse part behind its ReLU and offset."""
        coarse, fine = (torch.as_tensor(part.detach().numpy().copy()) for part in split_weights(self.weight))
        offset = self.offset_or_zero()
        bias = self.bias.detach() + offset
        if torch.onnx.is_in_onnx_export():
            x4 = x if x.dim() == 4 else x.reshape(-1, int(self.in_features), 1, 1)
            z = nn.functional.conv2d(x4, coarse[:, :, None, None], bias)
            z = torch.relu(z) if self.coarse_relu else z
            return z + nn.functional.conv2d(x4, fine[:, :, None, None], -offset)
        z = nn.functional.linear(x, coarse, bias)
        z = torch.relu(z) if self.coarse_relu else z
        return z + nn.functional.linear(x, fine, -offset)

    def offset_or_zero(self) -> torch.Tensor:
        offset = self.offset if self.offset is not None and self.coarse_relu else torch.zeros(self.out_features)
        return torch.as_tensor(offset.detach().numpy().copy())


def weight_grid(w: Any, per_channel: bool = False) -> Any:
    """``w`` on its symmetric int8 grid: one scale for the tensor, or one per output row."""
    scale = weight_step(w, per_channel)
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def weight_step(w: Any, per_channel: bool = False) -> Any:
    """The int8 step of ``w``'s weights: a scalar, or a column of one step per output row."""
    top = w.detach().abs().amax(dim=1, keepdim=True) if per_channel else w.detach().abs().max()
    return top.clamp_min(1e-12) / 127.0


def split_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w`` as (coarse, fine): coarse on ``w``'s per-channel int8 grid, fine the residual on its own one (a row
    already on the coarse grid gets a zero fine row)."""
    w = w.detach()
    coarse = weight_grid(w, per_channel=True)
    return coarse, weight_grid(w - coarse, per_channel=True)


def is_fine(layer: Any) -> bool:
    """Whether ``layer`` is split into coarse and fine int8 weights (``FineChannelLinear``)."""
    return isinstance(layer, FineChannelLinear)


def is_per_channel(layer: Any) -> bool:
    """Whether ``layer``'s int8 weights get one scale per output row."""
    return isinstance(layer, ChannelLinear)


def uses_channels(actor: Any) -> bool:
    """Whether ``actor`` exports 1x1 convolutions (the converter must then quantize per channel)."""
    return any(isinstance(m, ChannelLinear) for m in actor.modules())


def as_channel_linear(layer: nn.Linear, kind: type = ChannelLinear) -> ChannelLinear:
    """The same weights and biases as a ``ChannelLinear`` (or ``kind``)."""
    out = kind(layer.in_features, layer.out_features, bias=True)
    with torch.no_grad():
        out.weight.copy_(layer.weight)
        out.bias.copy_(layer.bias if layer.bias is not None else torch.zeros(layer.out_features))
    return out


def like(layer: Any, weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """A new Linear of ``layer``'s kind (per-tensor, per-channel, coarse + fine) with ``weight`` and ``bias`` (a
    fine layer's coarse activation is the caller's to fit: ``fit_coarse_activations``)."""
    out = type(layer)(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        out.weight.copy_(weight.float())
        out.bias.copy_(bias.float())
    return out


def to_channels(actor: Any) -> Any:
    """A copy of ``actor`` whose every Linear layer (body, head, tail) is a ``ChannelLinear``: the same
    function in float, per-channel int8 weights once converted."""
    import copy

    out = copy.deepcopy(actor)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, as_channel_linear(child))
    return out


def with_fine_layers(actor: Any, indices: list[int]) -> Any:
    """A copy of a per-channel ``actor`` whose learned layers at ``indices`` (in the order of the body's Linear
    layers, then the head) are ``FineChannelLinear``: the same function in float."""
    import copy

    out = copy.deepcopy(actor)
    learned = learned_layers(out)
    targets = {id(learned[i]) for i in indices}
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in targets:
                setattr(parent, name, as_channel_linear(child, FineChannelLinear))
    fit_coarse_activations(out)
    return out


def fit_coarse_activations(actor: Any) -> None:
    """Each fine layer's coarse part takes a ReLU when a ReLU follows the layer (see ``FineChannelLinear``)."""
    layers = [m for m in actor.body.modules() if not isinstance(m, (nn.Sequential, nn.Identity, nn.Flatten))]
    for layer, nxt in zip(layers, layers[1:] + [None]):
        if isinstance(layer, FineChannelLinear):
            layer.coarse_relu = type(nxt) is nn.ReLU
    if isinstance(actor.head, FineChannelLinear):
        actor.head.coarse_relu = False


def learned_layers(actor: Any) -> list[nn.Linear]:
    """The body's Linear layers and the head, in order (not the fixed output-copy average)."""
    return [m for m in actor.body.modules() if isinstance(m, nn.Linear)] + [actor.head]
