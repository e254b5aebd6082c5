"""Stage: score the int8 model against the float policy on held-out observations.

The int8 side runs through ``edgekit.runtime.EdgePolicy`` on the staged
bundle: the exact code path the device will take, so what is validated is
what ships. The float side is the unconditioned actor post-processed as SB3
does, so every rewrite of the conditioning stage is inside the measured error.
"""

from __future__ import annotations

from edgekit.core.metrics import describe, fidelity_metrics
from edgekit.core.postprocess import PostProcessor
from edgekit.runtime.policy import EdgePolicy
from edgekit.stages.artifacts import ObservationSets, PolicyGraph, Validation
from edgekit.stages.condition import Conditioned, model_inputs


def validate_int8(policy: EdgePolicy, reference: PolicyGraph, conditioned: Conditioned,
                  sets: ObservationSets) -> Validation:
    """Compare actions with the float policy's, and raw outputs with the conditioned float model's.

    ``policy``: the staged bundle loaded on the CPU, as the device loads it.
    """
    space = policy.manifest.action_space
    obs = policy.observations_of(sets.held_out)  # as the env returns them: predict encodes them again
    float_actions = PostProcessor(reference.postprocess, space)(reference.outputs(sets.held_out))
    int8_actions = policy.predict(obs)
    float_raw = conditioned.graph.outputs(model_inputs(sets.held_out, conditioned.preprocess))
    int8_raw = policy.predict_outputs(obs)
    step = policy.manifest.models["cpu"].output.quant.scale
    own = reference.outputs(sets.held_out) if space.kind == "discrete" else None  # decisive states: the policy's own
    metrics = fidelity_metrics(float_raw, int8_raw, float_actions, int8_actions, space, step, policy_out=own)
    return Validation(metrics=metrics, passed=True, float_outputs=float_raw, int8_outputs=int8_raw)


def summary_line(validation: Validation) -> str:
    """One line for the terminal."""
    return describe(validation.metrics)
