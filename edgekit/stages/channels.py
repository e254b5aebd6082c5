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


def is_per_channel(layer: Any) -> bool:
    """Whether ``layer``'s int8 weights get one scale per output row."""
    return isinstance(layer, ChannelLinear)


def uses_channels(actor: Any) -> bool:
    """Whether ``actor`` exports 1x1 convolutions (the converter must then quantize per channel)."""
    return any(isinstance(m, ChannelLinear) for m in actor.modules())


def as_channel_linear(layer: nn.Linear) -> ChannelLinear:
    """The same weights and biases as a ``ChannelLinear``."""
    out = ChannelLinear(layer.in_features, layer.out_features, bias=True)
    with torch.no_grad():
        out.weight.copy_(layer.weight)
        out.bias.copy_(layer.bias if layer.bias is not None else torch.zeros(layer.out_features))
    return out


def like(layer: Any, weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """A new Linear of ``layer``'s kind (per-tensor or per-channel) with ``weight`` and ``bias``."""
    kind = ChannelLinear if is_per_channel(layer) else nn.Linear
    out = kind(weight.shape[1], weight.shape[0])
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
