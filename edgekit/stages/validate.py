"""Stage: score the int8 model against the float actor on held-out observations.

The int8 side runs through ``edgekit.runtime.EdgePolicy`` on the staged
bundle: the exact code path the device will take, so what is validated is
what ships.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.artifacts import ObservationSets, PolicyGraph, Validation
from edgekit.report.metrics import fidelity_metrics
from edgekit.runtime.policy import EdgePolicy


def validate_int8(bundle_dir: Path, graph: PolicyGraph, sets: ObservationSets) -> Validation:
    """Compare raw outputs and actions of the CPU int8 model with the float actor."""
    policy = EdgePolicy.load(bundle_dir, device="cpu")
    float_out = graph.outputs(sets.held_out)
    int8_out = policy.predict_outputs(sets.held_out.reshape(-1, *policy.observation_shape))
    entry = policy.manifest.models["cpu"]
    metrics = fidelity_metrics(
        float_out, int8_out, graph.postprocess, policy.manifest.action_space, entry.output.quant.scale
    )
    return Validation(metrics=metrics, passed=True, float_outputs=float_out, int8_outputs=int8_out)


def summary_line(validation: Validation) -> str:
    """One line for the terminal."""
    m = validation.metrics
    if "discrete" in m:
        d = m["discrete"]
        decisive = d["decisive_agreement"]
        tail = f", {decisive:.1%} on decisive states" if decisive is not None else ""
        return f"argmax agreement {d['agreement']:.1%}{tail}"
    c = m["continuous"]
    if c["mean_share_of_range"] is None:
        return f"max raw error {m['raw_output']['max_abs_error']:.3g}"
    return f"action error mean {c['mean_share_of_range']:.2%}, p99 {c['p99_share_of_range']:.2%} of range"
