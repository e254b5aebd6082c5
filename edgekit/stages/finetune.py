"""Int8-aware fine-tuning by distillation: make the *quantized* actor reproduce the float one.

After range conditioning, most of the remaining int8 error comes from rounding
the hidden layers' weights and activations. This stage fine-tunes a copy of the
conditioned actor through a simulation of TensorFlow Lite's int8 arithmetic
(per-tensor symmetric weights, per-tensor asymmetric activations with ranges
from the calibration set, tanh outputs on TFLite's fixed 1/128 grid, the
straight-through estimator for rounding) so that its quantized outputs match
the original float actor's on the calibration observations. No rewards, no
environment: only the teacher's outputs. Seconds for these MLP sizes.

The weights it returns lie on their int8 grid (each Linear's largest weight is
exactly ±127 steps), so the converter's own per-tensor rounding keeps them.
The stage keeps the result only if it lowers the simulated error on a split of
the calibration set it did not train on; the held-out set stays untouched for
validation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.actor import DeterministicActor

TANH_STEP = 1.0 / 128.0  # TFLite's int8 TANH output: scale 1/128, zero point 0


@dataclass(frozen=True)
class FinetuneResult:
    actor: Any  # DeterministicActor, fine-tuned copy (or the input if it did not pay)
    kept: bool
    error_before: float
    error_after: float
    steps: int


def supported(actor: DeterministicActor) -> bool:
    """The simulation covers MLP bodies of Linear + Tanh/ReLU (SB3's defaults and common choices)."""
    from torch import nn

    allowed = (nn.Linear, nn.Tanh, nn.ReLU, nn.Identity, nn.Sequential, nn.Flatten)
    return all(isinstance(m, allowed) for m in actor.body.modules()) and \
        type(actor.features_extractor).__name__ in ("FlattenExtractor", "Flatten")  # Flatten: a Dict's features


def finetune(actor: DeterministicActor, inputs: np.ndarray, targets: np.ndarray, steps: int = 400,
             lr: float = 3e-4, seed: int = 0, split_input: bool = False) -> FinetuneResult:
    """Distil ``actor``'s quantized simulation towards ``targets`` (teacher outputs for ``inputs``)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(inputs))
    split = max(1, len(inputs) // 5)
    val_idx, train_idx = order[:split], order[split:]
    x = torch.as_tensor(inputs, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    student = copy.deepcopy(actor).train(False)
    sim = QuantSim(student, split_input=split_input)
    with torch.no_grad():
        sim.calibrate(x)
        before = float(((sim(x[val_idx]) - y[val_idx]) ** 2).mean())
    params = [p for m in sim.linears for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    batch = min(256, len(train_idx))
    for step in range(steps):
        idx = torch.as_tensor(rng.choice(train_idx, size=batch, replace=False))
        loss = ((sim(x[idx]) - y[idx]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 49:
            with torch.no_grad():
                sim.calibrate(x[train_idx])
    with torch.no_grad():
        sim.snap_weights()
        sim.calibrate(x)
        after = float(((sim(x[val_idx]) - y[val_idx]) ** 2).mean())
    kept = after < before
    return FinetuneResult(actor=student if kept else actor, kept=kept, error_before=before, error_after=after,
                          steps=steps)


def split_gain(actor: DeterministicActor, inputs: np.ndarray) -> tuple[float, float]:
    """Simulated mean output error of the int8 actor with a plain and with a split input.

    The split removes the input's rounding but rounds the first layer's
    pre-activation twice (its coarse half, then the sum), so it pays only where
    input rounding dominates: steep, saturating policies.
    """
    import torch

    x = torch.as_tensor(inputs, dtype=torch.float32)
    with torch.no_grad():
        target = actor(x)
        errors = []
        for split in (False, True):
            sim = QuantSim(actor, split_input=split)
            sim.calibrate(x)
            errors.append(float((sim(x) - target).abs().mean()))
    return errors[0], errors[1]


class QuantSim:
    """Forward pass of a DeterministicActor as TFLite's int8 kernels would compute it (approximately)."""

    def __init__(self, actor: DeterministicActor, split_input: bool = False) -> None:
        from torch import nn

        self.actor = actor
        self.split_input = split_input  # coarse input + exact residual through the first layer, then a sum
        self.layers = [m for m in actor.body if not isinstance(m, (nn.Identity, nn.Flatten))] + [actor.head]
        self.linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        self.ranges: dict[int, tuple[float, float]] = {}

    def calibrate(self, x: Any) -> None:
        """Record per-tensor min/max as the converter's representative dataset would."""
        self.ranges = {}
        self._forward(x, record=True)

    def snap_weights(self) -> None:
        """Replace each Linear's weights by their per-tensor int8 grid values."""
        for linear in self.linears:
            linear.weight.copy_(_weight_grid(linear.weight))

    def __call__(self, x: Any) -> Any:
        return self._forward(x, record=False)

    def _forward(self, x: Any, record: bool) -> Any:
        import torch
        from torch import nn

        slot = 0

        def observe(t: Any, relu: bool = False) -> Any:
            nonlocal slot
            key = slot
            slot += 1
            if record:
                lo, hi = float(t.min()), float(t.max())
                self.ranges[key] = (min(lo, 0.0) if not relu else 0.0, max(hi, 0.0))
                return t
            lo, hi = self.ranges[key]
            return _fake_quant(t, lo, hi)

        coarse = observe(x)
        h = coarse
        layers = self.layers
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Linear):
                w = _ste(layer.weight, _weight_grid(layer.weight))
                h = torch.nn.functional.linear(h, w, layer.bias)
                if i == 0 and self.split_input:  # the coarse half is rounded, then the residual added
                    h = observe(h) + torch.nn.functional.linear(x - coarse, layer.weight)
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if isinstance(nxt, nn.ReLU):
                    h = observe(torch.relu(h), relu=True)
                elif nxt is None and self.actor.clamp:
                    h = observe(torch.clamp(h, -1.0, 1.0))
                elif nxt is None and self.actor.pre_clip is not None:
                    h = observe(torch.clamp(h, -self.actor.pre_clip, self.actor.pre_clip))
                else:
                    h = observe(h)
            elif isinstance(layer, nn.Tanh):
                h = _tanh_q(h)
        if self.actor.squash:
            if self.actor.squash_gain != 1.0:
                h = observe(h * self.actor.squash_gain)
            h = _tanh_q(h)
        return h


def _ste(x: Any, q: Any) -> Any:
    """Straight-through estimator: the value of q, the gradient of x."""
    return x + (q - x).detach()


def _weight_grid(w: Any) -> Any:
    import torch

    scale = w.detach().abs().max().clamp_min(1e-12) / 127.0
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def _fake_quant(t: Any, lo: float, hi: float) -> Any:
    import torch

    scale = max(hi - lo, 1e-8) / 255.0
    zero = round(-128 - lo / scale)
    q = torch.clamp(torch.round(t / scale) + zero, -128, 127)
    return _ste(t, (q - zero) * scale)


def _tanh_q(h: Any) -> Any:
    import torch

    t = torch.tanh(h)
    return _ste(t, torch.clamp(torch.round(t / TANH_STEP), -128, 127) * TANH_STEP)
