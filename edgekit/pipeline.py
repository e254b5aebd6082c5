"""``edgekit build``: the composition of the stages, one way through.

    load -> extract -> rollouts -> condition -> export ONNX -> onnx2tf -> int8 -> validate -> bundle

Everything is written into a staging directory that becomes the bundle only
when every stage has passed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifacts import Validation
from edgekit.bundle.manifest import Manifest
from edgekit.bundle.files import staged_directory
from edgekit.progress import Progress
from edgekit.stages.condition import ConditioningOptions
from edgekit.stages.rollouts import RolloutRecipe


@dataclass(frozen=True)
class BuildOptions:
    """What ``edgekit build`` was asked to do."""

    model: Path
    env_id: str
    output: Path
    recipe: RolloutRecipe = field(default_factory=RolloutRecipe)
    conditioning: ConditioningOptions = field(default_factory=ConditioningOptions)
    force: bool = False


@dataclass(frozen=True)
class BuildResult:
    """The written bundle and what the build measured."""

    bundle_dir: Path
    manifest: Manifest
    validation: Validation
    timings: dict[str, float]


STAGES = ("load model", "extract policy", "roll out observations", "condition for int8", "export ONNX",
          "convert (onnx2tf)", "quantize int8", "validate int8", "write bundle")


def build(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    """Run every stage; the bundle appears at ``options.output`` only on success."""
    from edgekit.loading import load_agent
    from edgekit.stages import package
    from edgekit.stages.convert import convert_to_tensorflow
    from edgekit.stages.export_onnx import export_onnx
    from edgekit.stages.extract import extract_policy
    from edgekit.stages.quantize import quantize_int8
    from edgekit.stages.condition import condition, model_inputs
    from edgekit.stages.rollouts import collect_observations
    from edgekit.stages.validate import summary_line, validate_int8

    progress = progress or Progress(total=len(STAGES))
    options.recipe.check()
    with staged_directory(options.output, force=options.force) as stage, \
            tempfile.TemporaryDirectory(prefix="edgekit-") as scratch_name:
        scratch = Path(scratch_name)
        with progress.stage(STAGES[0]) as note:
            agent = load_agent(options.model)
            note.detail = (f"{agent.algorithm.name} {agent.policy_class}, {agent.observation_space.describe()} -> "
                           f"{agent.action_space.describe()} (saved by SB3 {agent.sb3_version})")
        with progress.stage(STAGES[1]) as note:
            graph = extract_policy(agent)
            note.detail = f"{graph.input_size} -> {graph.output_size} {graph.output}, post-process {graph.postprocess}"
        with progress.stage(STAGES[2]) as note:
            sets = collect_observations(agent, graph, options.env_id, options.recipe, progress)
            note.detail = f"{len(sets.calibration)} calibration + {len(sets.held_out)} held-out observations"
        with progress.stage(STAGES[3]) as note:
            conditioned = condition(graph, sets, agent.action_space, options.conditioning)
            calibration_inputs = model_inputs(sets.calibration, conditioned.preprocess)
            held_out_inputs = model_inputs(sets.held_out, conditioned.preprocess)
            note.detail = ", ".join(k.replace("_", " ") for k in conditioned.applied) or "none (plain conversion)"
        with progress.stage(STAGES[4]) as note:
            onnx_model = export_onnx(conditioned.graph, held_out_inputs, stage / package.ONNX_MODEL)
            note.detail = f"opset {onnx_model.opset}, max |onnx - torch| {onnx_model.max_abs_error:.1e}"
        with progress.stage(STAGES[5]) as note:
            tf_model = convert_to_tensorflow(onnx_model, held_out_inputs, scratch)
            note.detail = f"max |tf - onnx| {tf_model.max_abs_error:.1e}"
        with progress.stage(STAGES[6]) as note:
            int8 = quantize_int8(tf_model, calibration_inputs, conditioned.preprocess, stage / package.CPU_MODEL)
            note.detail = f"ops {_op_summary(int8.ops)}; int8 in/out, no float tensors"
        with progress.stage(STAGES[7]) as note:
            package.save_observations(sets, stage / package.CALIBRATION)
            package.write_manifest(stage, agent, conditioned.graph, options.env_id, int8, sets, conditioned.applied)
            validation = validate_int8(stage, graph, conditioned, sets)
            note.detail = summary_line(validation)
        with progress.stage(STAGES[8]) as note:
            report = _report(validation, progress.timings)
            package.write_json(stage / package.REPORT_JSON, report)
            manifest = package.write_manifest(stage, agent, conditioned.graph, options.env_id, int8, sets,
                                              conditioned.applied)
            note.detail = str(options.output)
    return BuildResult(bundle_dir=Path(options.output), manifest=manifest, validation=validation,
                       timings=dict(progress.timings))


def _op_summary(ops: tuple[str, ...]) -> str:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    return ", ".join(f"{name} x{n}" for name, n in counts.items())


def _report(validation: Validation, timings: dict[str, float]) -> dict[str, Any]:
    return {
        "schema": "edgekit-build-report",
        "schema_version": 1,
        "validation": validation.metrics,
        "timings_s": dict(timings),
    }
