"""Activation functions: where each one runs once converted, and the exact rewrites that make it int8.

A policy's ``activation_fn`` decides which TFLite ops its hidden layers
become. Measured with this repository's converter stack (onnx2tf 1.28,
TensorFlow 2.21), for SB3's MLP activations:

* **on the Edge TPU**: ReLU, Tanh, ReLU6, Hardtanh (fused into the layer), Sigmoid
  (LOGISTIC), SiLU (LOGISTIC, MUL), Tanhshrink (TANH, SUB), PReLU, and LeakyReLU /
  RReLU once rewritten as a constant-slope PReLU;
* **fully int8, on the CPU** (an op Coral's list lacks, where the compiler cuts the
  graph and runs the rest on the CPU): Hardswish (HARD_SWISH), Hardsigmoid
  (RELU_0_TO_1), Softplus and Mish (EXP, LOG), LogSigmoid (LOGISTIC, LOG), Softsign
  (ABS, DIV), CELU (EXP), and ELU / SELU once rewritten as
  ``scale * (relu(x) + alpha * (exp(min(x, 0)) - 1))`` (the converter leaves a plain ELU in float);
* **refused**: GELU (its exact form is erf, which TFLite has no kernel for at all).

Each rewrite is exact in float (the extract stage then checks the actor against
SB3's ``predict``). The rewrites build new modules: the SB3 policy is not touched.
Host only (torch).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from edgekit.core.errors import UnsupportedModelError

# Activation class name -> what to train with instead, for those TFLite cannot run in int8.
REFUSED: Mapping[str, str] = {
    "GELU": "its exact form uses erf, which TFLite has no kernel for",
}
INSTEAD = "nn.SiLU (close to GELU, fully int8 and on the Edge TPU), nn.Tanh or nn.ReLU"

# TFLite ops of activations that run int8 on the CPU only (for the build's note).
CPU_ONLY_OPS: Mapping[str, str] = {
    "HARD_SWISH": "Hardswish", "RELU_0_TO_1": "Hardsigmoid", "EXP": "ELU, SELU, CELU, Softplus or Mish",
    "LOG": "Softplus, Mish or LogSigmoid", "ABS": "Softsign", "DIV": "Softsign", "LEAKY_RELU": "LeakyReLU",
}


class ExpLinear(nn.Module):
    """ELU / SELU as ``scale * (relu(x) + alpha * (exp(min(x, 0)) - 1))``: RELU, MINIMUM, EXP and
    arithmetic, each with an int8 TFLite kernel (a plain ELU stays float in the converter)."""

    def __init__(self, alpha: float, scale: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x) + self.alpha * (torch.exp(torch.clamp(x, max=0.0)) - 1.0)
        return y * self.scale if self.scale != 1.0 else y


def _prelu(slope: float) -> nn.PReLU:
    """A single-slope PReLU equal to LeakyReLU(slope): TFLite's PRELU maps onto the Edge TPU, LEAKY_RELU does not."""
    prelu = nn.PReLU(num_parameters=1, init=float(slope))
    prelu.weight.requires_grad_(False)
    return prelu


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _rewrite(module: nn.Module) -> tuple[nn.Module, str] | None:
    """The exact rewrite of one activation module, and what was done; None to keep it."""
    if type(module) is nn.LeakyReLU:
        return _prelu(module.negative_slope), "LeakyReLU as PReLU (maps onto the Edge TPU)"
    if type(module) is nn.RReLU:  # eval mode: the fixed slope (lower + upper) / 2
        return _prelu((module.lower + module.upper) / 2.0), "RReLU (eval slope) as PReLU (maps onto the Edge TPU)"
    if type(module) is nn.ELU:
        return ExpLinear(module.alpha), "ELU as relu(x) + alpha (exp(min(x, 0)) - 1) (int8 EXP, on the CPU)"
    if type(module) is nn.SELU:
        return ExpLinear(_SELU_ALPHA, _SELU_SCALE), "SELU as scaled relu + exp (int8 EXP, on the CPU)"
    return None


def prepare_activations(body: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """``body`` with its activations made int8-convertible (a new Sequential when one is rewritten), and
    the rewrites done. Raises ``UnsupportedModelError`` naming an activation TFLite cannot run in int8."""
    for module in body.modules():
        reason = REFUSED.get(type(module).__name__)
        if reason is not None:
            raise UnsupportedModelError(
                f"the policy's activation_fn {type(module).__name__} has no fully int8 TFLite form: {reason}",
                hint=f"retrain with activation_fn={INSTEAD}",
            )
    notes: list[str] = []
    return _rebuilt(body, notes), tuple(dict.fromkeys(notes))


def _rebuilt(module: nn.Module, notes: list[str]) -> nn.Module:
    rewritten = _rewrite(module)
    if rewritten is not None:
        notes.append(rewritten[1])
        return rewritten[0]
    if isinstance(module, nn.Sequential):
        children = [_rebuilt(child, notes) for child in module]
        if any(new is not old for new, old in zip(children, module)):
            return nn.Sequential(*children)
    return module
