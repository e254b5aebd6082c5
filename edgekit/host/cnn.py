"""SB3's NatureCNN as the int8 model needs it (host only, torch).

The actor keeps SB3's NCHW convolutions (onnx2tf turns the NCHW ONNX input into
the NHWC TFLite input the Edge TPU wants, with no TRANSPOSE at the input). One
rewrite, exact in float: NatureCNN's ``Flatten`` reads the last feature map in
(C, H, W) order, which in NHWC TFLite costs a TRANSPOSE before the RESHAPE. Reading
it in (H, W, C) order and permuting the columns of the Linear layer after it
gives the same features; onnx2tf then emits CONV_2D x3, RESHAPE, FULLY_CONNECTED.
A 1x1 last feature map (36x36 to 43x43 images) is read with a mean over its one
pixel instead (exact; a MEAN op with the same int8 scale in and out): the TFLite
converter drops a flattening RESHAPE of size-1 dimensions and would feed the
FULLY_CONNECTED a rank-4 tensor, which the Edge TPU wants as [1, N].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ChannelsLastFlatten(nn.Module):
    """Flatten (B, C, H, W) in (H, W, C) order: NHWC's own memory order, so no transpose in TFLite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] == 1 and x.shape[3] == 1:  # one pixel: keep the FULLY_CONNECTED input rank 2
            return x.mean(dim=(2, 3))
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def is_nature_cnn(extractor: Any) -> bool:
    """SB3's NatureCNN (by class, as the loader builds it; a custom extractor is not deployed)."""
    from stable_baselines3.common.torch_layers import NatureCNN

    return type(extractor) is NatureCNN


def flatten_channels_last(extractor: nn.Module, chw: tuple[int, int, int]) -> None:
    """Rewrite ``extractor`` (a NatureCNN for (C, H, W) inputs) in place: channels-last flatten,
    the following Linear's input columns permuted to match. Outputs are unchanged."""
    cnn, linear = extractor.cnn, extractor.linear[0]
    if not isinstance(cnn[-1], nn.Flatten) or not isinstance(linear, nn.Linear):
        raise ValueError("unexpected NatureCNN layout")
    with torch.no_grad():
        c, h, w = cnn[:-1](torch.zeros(1, *chw)).shape[1:]
        if c * h * w != linear.in_features:
            raise ValueError("NatureCNN's feature map does not fit its Linear layer")
        order = torch.arange(c * h * w).reshape(c, h, w).permute(1, 2, 0).reshape(-1)
        linear.weight.copy_(linear.weight[:, order])
    cnn[-1] = ChannelsLastFlatten()
