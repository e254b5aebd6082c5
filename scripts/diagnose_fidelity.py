"""Where does an agent's int8 error come from? Coverage, and the error of each rounding alone.

For one agent (a zip or an RL Zoo run folder) this rolls out the build's calibration and held-out
observations, conditions the actor (by default only the exact range rewrites: input scaling and
output range; ``--defaults`` for edgekit's full conditioning) and reports, on the held-out
observations, through the int8 simulation the conditioning decides on (``edgekit/stages/int8sim.py``):

* coverage: the share of held-out observations with some feature outside the calibration range,
  how far beyond (in shares of the feature's calibration span), and with ``--cut N`` the same for
  calibration episodes cut at N steps (the recipe before whole episodes);
* the action error (mean / p99 of the range, or decisive agreement) with everything rounded, with
  nothing rounded, and with one part rounded alone: the int8 input, each layer's weights, each
  activation tensor (its calibrated range shown);
* each layer's weight spread: its largest magnitude, its median, and the median in int8 steps.

    python scripts/diagnose_fidelity.py MODEL [--env ENV_ID] [--env-module M] [--defaults] [--cut 250]

Numbers in docs/fidelity.md come from this script.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def prepare(model: str, env_id: str | None, env_module: str | None, cut: int | None = None) -> tuple[Any, ...]:
    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, extract_float_policy, load_model
    from edgekit.stages.rollouts import collect_observations, recipe_for

    options = BuildOptions(model=model, env_id=env_id, env_module=env_module, output=Path("unused"))
    loaded = load_model(options)
    graph, detail = extract_float_policy(options, loaded)
    recipe = recipe_for(loaded.env)[0]
    if cut is not None:
        recipe = replace(recipe, max_episode_steps=cut, min_episodes=1)
    sets = collect_observations(loaded.agent, graph, loaded.env, recipe, Progress(quiet=True))
    return loaded, graph, sets, detail


def coverage(sets: Any) -> str:
    low, high = sets.calibration.min(axis=0), sets.calibration.max(axis=0)
    span = np.maximum(high - low, 1e-12)
    beyond = np.maximum(np.maximum(low - sets.held_out, sets.held_out - high), 0.0) / span
    outside = beyond > 0
    return (f"{outside.any(axis=1).mean():.2%} of held-out observations outside the calibration range "
            f"({int(outside.any(axis=0).sum())} of {sets.calibration.shape[1]} features; at most "
            f"{beyond.max():.2f} of a feature's span beyond, p99 of rows {np.percentile(beyond.max(axis=1), 99):.3f}); "
            f"{sets.facts.get('calibration_episodes')} calibration episodes")


class Rounding:
    """Which parts the int8 simulation rounds: slots (0 = input, then each activation tensor in order) and
    weight tensors (each Linear in order); None = all."""

    def __init__(self) -> None:
        import edgekit.stages.int8sim as sim

        self.sim = sim
        self.fake_quant, self.weight_grid, self.tanh_q = sim.fake_quant, sim.weight_grid, sim.tanh_q
        self.slots: set[int] | None = None
        self.weights: set[int] | None = None
        self.tanh = True
        self.slot = self.weight = 0
        sim.fake_quant, sim.weight_grid, sim.tanh_q = self._fake_quant, self._weight_grid, self._tanh_q

    def _fake_quant(self, t: Any, lo: float, hi: float) -> Any:
        k, self.slot = self.slot, self.slot + 1
        return self.fake_quant(t, lo, hi) if self.slots is None or k in self.slots else t

    def _weight_grid(self, w: Any, per_channel: bool = False) -> Any:
        k, self.weight = self.weight, self.weight + 1
        return self.weight_grid(w, per_channel) if self.weights is None or k in self.weights else w

    def _tanh_q(self, h: Any) -> Any:
        import torch

        return self.tanh_q(h) if self.tanh else torch.tanh(h)

    def run(self, actor: Any, calibration: np.ndarray, x: np.ndarray, slots: set[int] | None = None,
            weights: set[int] | None = None, tanh: bool = True) -> tuple[np.ndarray, dict[int, tuple[float, float]]]:
        import torch

        quant = self.sim.QuantSim(actor)
        with torch.no_grad():
            self.slots, self.weights, self.tanh = None, None, True
            quant.calibrate(torch.as_tensor(calibration))
            self.slots, self.weights, self.tanh, self.slot, self.weight = slots, weights, tanh, 0, 0
            out = quant(torch.as_tensor(x)).numpy()
        self.slots, self.weights, self.tanh = None, None, True
        return out, quant.ranges


def error(graph: Any, conditioned: Any, space: Any, rows: np.ndarray, outputs: np.ndarray) -> str:
    from edgekit.core.metrics import decisive_mask
    from edgekit.core.postprocess import ARGMAX, PostProcessor

    reference_out = graph.outputs(rows)
    reference = PostProcessor(graph.postprocess, space)(reference_out)
    actions = PostProcessor(conditioned.graph.postprocess, space)(outputs)
    if graph.postprocess == ARGMAX:
        agree = actions == reference
        return f"decisive agreement {agree[decisive_mask(reference_out)].mean():.2%} (overall {agree.mean():.2%})"
    span = (space.high_array() - space.low_array()).reshape(-1)
    share = np.abs(actions - reference).reshape(len(reference), -1) / span
    return f"mean {share.mean():.2%} / p99 {np.percentile(share, 99):.2%} of the range"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--env", dest="env_id", default=None)
    parser.add_argument("--env-module", default=None)
    parser.add_argument("--defaults", action="store_true", help="edgekit's full conditioning, not only ranges")
    parser.add_argument("--cut", type=int, default=None, metavar="N",
                        help="also show the coverage of calibration episodes cut at N steps")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from torch import nn

    from edgekit.stages.condition import ConditioningOptions, condition, model_inputs
    from edgekit.stages.int8sim import QuantSim, supported

    loaded, graph, sets, detail = prepare(args.model, args.env_id, args.env_module)
    print(f"{args.model}: {detail}")
    print(f"coverage, whole episodes: {coverage(sets)}")
    if args.cut:
        cut_sets = prepare(args.model, args.env_id, args.env_module, cut=args.cut)[2]
        print(f"coverage, episodes cut at {args.cut} steps: {coverage(cut_sets)}")
    options = ConditioningOptions() if args.defaults else ConditioningOptions(finetune=False, input_split=0,
                                                                              widen=False, per_channel=False)
    conditioned = condition(graph, sets, loaded.agent.action_space, options)
    for key, value in conditioned.applied.items():
        print(f"  {key}: {value}")
    actor = conditioned.graph.module
    if not supported(actor):
        print("the int8 simulation does not cover this actor")
        return 1
    space = loaded.agent.action_space
    calibration = model_inputs(sets.calibration, conditioned.preprocess)
    held = model_inputs(sets.held_out, conditioned.preprocess)
    rounding = Rounding()
    everything, ranges = rounding.run(actor, calibration, held)
    linears = QuantSim(actor).linears
    print(f"held-out, everything rounded:      {error(graph, conditioned, space, sets.held_out, everything)}")
    none = rounding.run(actor, calibration, held, slots=set(), weights=set(), tanh=False)[0]
    print(f"held-out, nothing rounded:         {error(graph, conditioned, space, sets.held_out, none)}")
    alone = rounding.run(actor, calibration, held, slots={0}, weights=set(), tanh=False)[0]
    print(f"held-out, the input alone:         {error(graph, conditioned, space, sets.held_out, alone)}")
    alone = rounding.run(actor, calibration, held, slots=set(), tanh=False)[0]
    print(f"held-out, all weights alone:       {error(graph, conditioned, space, sets.held_out, alone)}")
    for k, layer in enumerate(linears):
        w = layer.weight.detach().abs()
        alone = rounding.run(actor, calibration, held, slots=set(), weights={k}, tanh=False)[0]
        print(f"held-out, layer {k + 1} weights alone:  {error(graph, conditioned, space, sets.held_out, alone)}"
              f"  ({tuple(w.shape)}, largest {float(w.max()):.3g}, median {float(w.median()):.3g} = "
              f"{127 * float(w.median()) / max(float(w.max()), 1e-12):.1f} int8 steps per tensor, "
              f"{float((w / w.amax(dim=1, keepdim=True).clamp_min(1e-12)).median()) * 127:.1f} per channel)")
    for slot in range(1, len(ranges)):
        alone = rounding.run(actor, calibration, held, slots={slot}, weights=set(), tanh=False)[0]
        lo, hi = ranges[slot]
        print(f"held-out, activation {slot} alone:    {error(graph, conditioned, space, sets.held_out, alone)}"
              f"  (range {lo:.3g} .. {hi:.3g})")
    if any(isinstance(m, nn.Tanh) for m in actor.body.modules()):
        alone = rounding.run(actor, calibration, held, slots=set(), weights=set(), tanh=True)[0]
        print(f"held-out, TANH outputs alone:      {error(graph, conditioned, space, sets.held_out, alone)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
