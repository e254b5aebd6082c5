"""``DeterministicActor``: the deterministic policy path as one plain torch module.

    obs -> features_extractor -> body -> head (Linear) -> [clamp] -> [tanh] -> [tail (Linear)]

Every supported algorithm's ``predict(obs, deterministic=True)`` reduces to this
shape (the table in ``edgekit.host.algorithms`` says how). Having the first and the
last Linear layer by name lets the fidelity stage (``stages/condition.py``)
fold input scaling and output ranges into their weights. Host only (torch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DeterministicActor(nn.Module):
    """features -> body -> head, then an optional clamp to [-1, 1], an optional tanh and an optional tail.

    ``squash_gain`` k: when the head was divided by k (to clamp its output to
    [-1, 1] before the tanh), the tanh is applied to k * z, restoring the value.
    ``tail``: a Linear after the tanh; the widening stage uses it to average
    several dithered copies of each squashed action (``stages/widen.py``).
    """

    def __init__(self, features_extractor: nn.Module, body: nn.Module, head: nn.Linear, squash: bool) -> None:
        super().__init__()
        self.features_extractor = features_extractor
        self.body = body
        self.head = head
        self.squash = squash
        self.pre_clip: float | None = None  # SAC with gSDE clips the mean (clip_mean) before the tanh
        self.clamp = False
        self.squash_gain = 1.0
        self.tail: nn.Linear | None = None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.head(self.body(self.features_extractor(obs)))
        if self.pre_clip is not None:
            z = torch.clamp(z, -self.pre_clip, self.pre_clip)
        if self.clamp:
            z = torch.clamp(z, -1.0, 1.0)
        if self.squash:
            z = torch.tanh(self.gain(z) if self.squash_gain != 1.0 else z)
        if self.tail is not None:
            z = self.tail(z)
        if z.dim() == 4:  # exported as 1x1 convolutions (``stages/channels.py``): back to [B, M]
            z = z.reshape(-1, int(self.tail.out_features if self.tail is not None else self.head.out_features))
        return z

    def gain(self, z: torch.Tensor) -> torch.Tensor:
        """``squash_gain * z`` as a diagonal linear map: it exports as a FULLY_CONNECTED (a 1x1 CONV_2D behind
        per-channel layers), whose input keeps its own int8 range (the clamp's [-1, 1]); as a MUL by a
        constant, the converter gave the clamp's output the MUL's range (k times wider) and so k times fewer
        levels (measured)."""
        size = int(self.head.out_features)  # a Python int, so the export sees a constant weight
        weight = torch.eye(size, dtype=z.dtype) * self.squash_gain
        if z.dim() == 4:
            return torch.nn.functional.conv2d(z, weight[:, :, None, None])
        return torch.nn.functional.linear(z, weight)

    def pre_squash(self, obs: torch.Tensor) -> torch.Tensor:
        """The head's output before clamp and tanh (what the output range must hold)."""
        return self.head(self.body(self.features_extractor(obs)))

    def first_linear(self) -> nn.Module:
        """The layer that sees the (flattened) observation first."""
        for module in self.body.modules():
            if isinstance(module, nn.Linear):
                return module
        return self.head


def split_input_linear(linear: nn.Linear, magnification: int) -> nn.Linear:
    """The first layer for a split input ``[coarse | fine]`` (see ``Preprocess.split``).

    One Linear over both parts with weights ``[W | W / m]``: the fine part carries
    the coarse part's rounding residual magnified m times, so ``W @ coarse + (W / m)
    @ fine`` is ``W @ x`` to about 1/m of an input step, accumulated in int32 and
    rounded once (one FULLY_CONNECTED). The fine columns share the layer's
    per-tensor weight scale, so m trades residual precision against the precision
    of W / m: m = 16 balances the two (measured, see ``stages/condition.py``).
    """
    split = nn.Linear(2 * linear.in_features, linear.out_features)
    with torch.no_grad():
        split.weight.copy_(torch.cat([linear.weight, linear.weight / magnification], dim=1))
        split.bias.copy_(linear.bias)
    return split


def replace_first_linear(actor: DeterministicActor, new: nn.Module) -> None:
    """Swap the layer ``actor.first_linear()`` returns for ``new`` (in the body or as the head)."""
    first = actor.first_linear()
    if first is actor.head:
        actor.head = new
        return
    for parent in actor.body.modules():
        for name, child in parent.named_children():
            if child is first:
                setattr(parent, name, new)
                return
    raise ValueError("the first Linear layer was not found")


def split_sequential(seq: nn.Sequential, drop_trailing: type | None = None) -> tuple[nn.Module, nn.Linear]:
    """Split an SB3 MLP ``Sequential`` into (body, last Linear), optionally dropping a trailing module."""
    layers: list[Any] = list(seq)
    if drop_trailing is not None:
        if not layers or not isinstance(layers[-1], drop_trailing):
            raise ValueError(f"expected the network to end in {drop_trailing.__name__}")
        layers = layers[:-1]
    if not layers or not isinstance(layers[-1], nn.Linear):
        raise ValueError("expected the network to end in a Linear layer")
    return nn.Sequential(*layers[:-1]), layers[-1]


def mean_over_quantiles(head: nn.Linear, n_quantiles: int, n_actions: int) -> nn.Linear:
    """A Linear emitting the mean over quantiles of ``head``'s outputs, laid out (quantile, action) as
    QR-DQN's ``view(-1, n_quantiles, n_actions)``: the mean of linear maps is the linear map of the means."""
    if head.out_features != n_quantiles * n_actions:
        raise ValueError(f"expected {n_quantiles} x {n_actions} quantile outputs, got {head.out_features}")
    folded = nn.Linear(head.in_features, n_actions)
    with torch.no_grad():
        weight = head.weight.double().view(n_quantiles, n_actions, head.in_features).mean(dim=0)
        bias = head.bias.double().view(n_quantiles, n_actions).mean(dim=0) if head.bias is not None \
            else torch.zeros(n_actions, dtype=torch.float64)
        folded.weight.copy_(weight.float())
        folded.bias.copy_(bias.float())
    return folded


def with_biases(seq: nn.Sequential) -> nn.Sequential:
    """A copy of ``seq`` whose bias-less Linear layers have a zero bias (the same function); the
    conditioning stage folds offsets into biases."""
    layers: list[nn.Module] = []
    for layer in seq:
        if isinstance(layer, nn.Linear) and layer.bias is None:
            copy = nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                copy.weight.copy_(layer.weight)
                copy.bias.zero_()
            layer = copy
        layers.append(layer)
    return nn.Sequential(*layers)


def _is_batch_renorm(module: nn.Module) -> bool:
    """sb3-contrib's BatchRenorm (CrossQ), recognised by its running-statistics buffers."""
    return type(module).__name__ in ("BatchRenorm", "BatchRenorm1d") and hasattr(module, "ra_mean") \
        and hasattr(module, "ra_var")


def fold_batch_renorm(seq: nn.Sequential) -> list[nn.Module]:
    """``seq``'s layers with each eval-mode BatchRenorm folded into the Linear that follows it.

    In eval mode (SB3's predict) BatchRenorm is ``a * x + c`` per feature, with
    ``a = scale / sqrt(ra_var + eps)`` and ``c = bias - a * ra_mean`` (``scale``
    1, ``bias`` 0 without ``affine``), so ``W (a x + c) + b = (W diag(a)) x + (W c + b)``:
    exact, and the folded Linear layers are new modules (the policy is left as it is).
    """
    layers: list[nn.Module] = []
    pending: tuple[torch.Tensor, torch.Tensor] | None = None
    for layer in seq:
        if _is_batch_renorm(layer):
            a, c = _renorm_affine(layer)
            if pending is not None:  # two in a row compose
                a, c = pending[0] * a, pending[1] * a + c
            pending = (a, c)
            continue
        if pending is not None:
            if not isinstance(layer, nn.Linear):
                raise ValueError(f"BatchRenorm followed by {type(layer).__name__}, not by a Linear layer")
            layer = _affine_into_linear(layer, *pending)
            pending = None
        layers.append(layer)
    if pending is not None:
        raise ValueError("the network ends in a BatchRenorm with no Linear layer after it")
    return layers


def _renorm_affine(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        a = 1.0 / torch.sqrt(layer.ra_var.double() + float(layer.eps))
        c = -layer.ra_mean.double() * a
        if getattr(layer, "affine", True):
            a, c = layer.scale.double() * a, layer.scale.double() * c + layer.bias.double()
    return a, c


def _affine_into_linear(linear: nn.Linear, a: torch.Tensor, c: torch.Tensor) -> nn.Linear:
    folded = nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        w = linear.weight.double()
        b = linear.bias.double() if linear.bias is not None else torch.zeros(linear.out_features, dtype=torch.float64)
        folded.weight.copy_((w * a[None, :]).float())
        folded.bias.copy_((b + w @ c).float())
    return folded
