"""A torch simulation of TensorFlow Lite's int8 kernels for the actors edgekit builds.

The fidelity stages (``condition``, ``finetune``, ``widen``) decide by
measurement, and building a real int8 model takes seconds, so they measure on
this simulation instead; checked against the real converter and interpreter
(the simulated and real errors agree to a few percent of their value, see
scripts/bench_fidelity.py). It models what the converter does to an MLP actor:

* the int8 input: per-tensor asymmetric over its calibrated min/max;
* FULLY_CONNECTED: per-tensor symmetric int8 weights (largest weight = 127
  steps), exact int32 accumulation, the output rounded once onto its own
  per-tensor asymmetric grid; a fused RELU / RELU6 / RELU_N1_TO_1 clamps first;
* the 1x1 CONV_2D of a ``ChannelLinear`` (``stages/channels.py``): the same,
  with one weight scale per output row (each row's largest weight = 127 steps);
* a ``FineChannelLinear``: two such convolutions, the coarse weights and their
  rounding residual, each output rounded onto its own per-tensor grid, then
  summed (ADD, which takes the activation after it);
* TANH: int8 in, output on the fixed grid 1/128;
* the squash head's MUL (``squash_gain``) and the averaging layer after it
  (``tail``): each output rounded onto its own grid.

Gradients pass straight through every rounding (the straight-through
estimator), which is what the int8-aware distillation trains through.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.stages.channels import is_fine, is_per_channel, split_weights, weight_grid, weight_step

TANH_STEP = 1.0 / 128.0  # TFLite's int8 TANH output: scale 1/128, zero point 0
FINE_OFFSET_MARGIN = 1.5  # a fine layer's offset: this times the largest |fine part| seen in calibration
# What the simulation rounds: the int8 input, the weights, the other activations (hidden, TANH, output).
INPUT, WEIGHTS, ACTIVATIONS = "input", "weights", "activations"
ALL_PARTS = frozenset((INPUT, WEIGHTS, ACTIVATIONS))


def supported(actor: Any) -> bool:
    """MLP bodies of Linear + Tanh / ReLU / ReLU6 (SB3's defaults, common choices, and what widening makes)."""
    from torch import nn

    allowed = (nn.Linear, nn.Tanh, nn.ReLU, nn.ReLU6, nn.Identity, nn.Sequential, nn.Flatten)
    if not all(isinstance(m, allowed) for m in actor.body.modules()):
        return False
    if type(actor.features_extractor).__name__ not in ("FlattenExtractor", "Flatten") \
            or not isinstance(actor.head, nn.Linear):
        return False
    layers = body_layers(actor)
    # Linear and activation alternate, starting with a Linear (what SB3's create_mlp builds)
    return all(isinstance(m, nn.Linear) == (i % 2 == 0) for i, m in enumerate(layers)) and len(layers) % 2 == 0


def body_layers(actor: Any) -> list[Any]:
    """The body's modules in order, without the no-op ones."""
    from torch import nn

    return [m for m in actor.body.modules()
            if not isinstance(m, (nn.Sequential, nn.Identity, nn.Flatten))]


class QuantSim:
    """Forward pass of a DeterministicActor as TFLite's int8 kernels compute it (up to kernel rounding)."""

    def __init__(self, actor: Any, weights_only: bool = False, parts: frozenset[str] = ALL_PARTS) -> None:
        """``parts``: what is rounded (the others stay float: where the error comes from); ``weights_only``:
        the weights alone."""
        from torch import nn

        self.actor = actor
        self.parts = frozenset((WEIGHTS,)) if weights_only else parts
        self.layers = body_layers(actor) + [actor.head]
        self.linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        if actor.tail is not None:
            self.linears.append(actor.tail)
        self.ranges: dict[int, tuple[float, float]] = {}

    def calibrate(self, x: Any) -> None:
        """Record per-tensor min/max as the converter's representative dataset does."""
        self.ranges = {}
        self._forward(x, record=True)

    def snap_weights(self) -> None:
        """Replace each Linear's weights by their int8 grid values, per tensor or per channel as the layer will
        be converted (the converter then keeps them)."""
        for linear in self.linears:
            linear.weight.copy_(layer_grid(linear))

    def __call__(self, x: Any) -> Any:
        return self._forward(x, record=False)

    def _forward(self, x: Any, record: bool) -> Any:
        import torch
        from torch import nn

        slot = 0
        acts, weights = ACTIVATIONS in self.parts, WEIGHTS in self.parts

        def observe(t: Any, floor_zero: bool = False) -> Any:
            nonlocal slot
            key = slot
            slot += 1
            if record:
                self.ranges[key] = (0.0 if floor_zero else min(float(t.min()), 0.0), max(float(t.max()), 0.0))
                return t
            rounded = INPUT in self.parts if key == 0 else acts
            return fake_quant(t, *self.ranges[key]) if rounded else t

        def tanh(t: Any) -> Any:
            return tanh_q(t) if acts else torch.tanh(t)

        def linear(t: Any, layer: Any) -> Any:
            if is_fine(layer):
                return fine_linear(t, layer)
            w = ste(layer.weight, layer_grid(layer)) if weights else layer.weight
            return torch.nn.functional.linear(t, w, layer.bias)

        def fine_linear(t: Any, layer: Any) -> Any:
            """Coarse and fine parts, each output on its own int8 grid (two slots, whatever is rounded),
            summed; the gradient is the float layer's (straight through). Calibration sets the layer's offset
            (see ``FineChannelLinear``) from the fine part's largest magnitude, with a margin."""
            coarse, fine = split_weights(layer.weight) if weights else (layer.weight.detach(),
                                                                        torch.zeros_like(layer.weight))
            z_fine = torch.nn.functional.linear(t, fine).detach()
            if record and layer.coarse_relu and weights:  # the offset the int8 model will carry
                layer.offset = FINE_OFFSET_MARGIN * z_fine.abs().amax(dim=0) + 1e-9
            offset = layer.offset_or_zero()
            z = torch.nn.functional.linear(t, coarse, layer.bias) + offset
            z = observe(torch.relu(z), floor_zero=True) if layer.coarse_relu else observe(z)
            summed = z + observe(z_fine - offset)
            return ste(torch.nn.functional.linear(t, layer.weight, layer.bias), summed)

        h = observe(x)
        actor = self.actor
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, nn.Linear):
                if isinstance(layer, nn.Tanh):
                    h = tanh(h)
                continue  # ReLU / ReLU6 are fused into the Linear before them
            h = linear(h, layer)
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if isinstance(nxt, nn.ReLU6):
                h = observe(torch.clamp(h, 0.0, 6.0), floor_zero=True)
            elif isinstance(nxt, nn.ReLU):
                h = observe(torch.relu(h), floor_zero=True)
            elif nxt is None and actor.clamp:
                h = observe(torch.clamp(h, -1.0, 1.0))
            elif nxt is None and actor.pre_clip is not None:
                h = observe(torch.clamp(h, -actor.pre_clip, actor.pre_clip))
            else:
                h = observe(h)
        if actor.squash:
            if actor.squash_gain != 1.0:
                h = observe(h * actor.squash_gain)
            h = tanh(h)
        if actor.tail is not None:
            h = observe(linear(h, actor.tail))
        return h


def simulate(actor: Any, calibration: np.ndarray, inputs: np.ndarray, weights_only: bool = False,
             parts: frozenset[str] = ALL_PARTS) -> np.ndarray:
    """The int8 outputs for ``inputs`` of ``actor`` calibrated on ``calibration`` (model inputs, float32)."""
    import torch

    sim = QuantSim(actor, weights_only=weights_only, parts=parts)
    with torch.no_grad():
        sim.calibrate(torch.as_tensor(calibration, dtype=torch.float32))
        return sim(torch.as_tensor(inputs, dtype=torch.float32)).numpy().astype(np.float64)


def ste(x: Any, q: Any) -> Any:
    """Straight-through estimator: the value of q, the gradient of x."""
    return x + (q - x).detach()


def layer_grid(layer: Any) -> Any:
    """``layer``'s weights on the grid its conversion gives them (per channel for a ``ChannelLinear``; coarse +
    fine for a ``FineChannelLinear``)."""
    if is_fine(layer):
        coarse, fine = split_weights(layer.weight)
        return coarse + fine
    return weight_grid(layer.weight, is_per_channel(layer))


def layer_step(layer: Any) -> Any:
    """``layer``'s int8 weight step as its conversion gives it (see ``weight_step``)."""
    return weight_step(layer.weight, is_per_channel(layer))


def fake_quant(t: Any, lo: float, hi: float) -> Any:
    import torch

    scale = max(hi - lo, 1e-8) / 255.0
    zero = round(-128 - lo / scale)
    q = torch.clamp(torch.round(t / scale) + zero, -128, 127)
    return ste(t, (q - zero) * scale)


def tanh_q(h: Any) -> Any:
    import torch

    t = torch.tanh(h)
    return ste(t, torch.clamp(torch.round(t / TANH_STEP), -128, 127) * TANH_STEP)
