"""``edgekit build``: the composition of the stages, one way through.

    load -> extract -> rollouts -> condition -> export ONNX -> onnx2tf -> int8
         -> validate -> Edge TPU check -> compile (when the compiler exists) -> bundle

Everything is written into a staging directory that becomes the bundle only
when every stage has passed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle.files import staged_directory
from edgekit.bundle.layout import BUILD_REPORT_SCHEMA
from edgekit.bundle.manifest import Manifest
from edgekit.core.cleanup import scratch_directory
from edgekit.core.env_spec import EnvSpec
from edgekit.core.errors import UnsupportedModelError
from edgekit.core.progress import Progress
from edgekit.host.loading.loaded_agent import LoadedAgent
from edgekit.host.loading.source import ModelSource
from edgekit.report.build_report import ReportResult
from edgekit.report.thresholds import Thresholds
from edgekit.stages.artifacts import Int8Model, ObservationSets, PolicyGraph, Validation
from edgekit.stages.condition import Conditioned, ConditioningOptions
from edgekit.stages.rollouts import RolloutRecipe


@dataclass(frozen=True)
class CompileOptions:
    """Whether and how to run Google's edgetpu_compiler."""

    enabled: bool = True
    compiler: str | None = None  # path; default: edgetpu_compiler on PATH
    timeout: float = 180.0
    min_runtime: int | None = None
    require_full_tpu: bool = False


@dataclass(frozen=True)
class ReportOptions:
    """The quantization-error report every build writes (see ``edgekit report``)."""

    episodes: int = 10
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class BuildOptions:
    """What ``edgekit build`` was asked to do."""

    model: Path | str  # a zip, an rl-zoo3 run folder, a hub snapshot folder, or hf://ORG/REPO
    env_id: str | None  # None: the id the zoo/hub layout names
    output: Path
    recipe: RolloutRecipe = field(default_factory=RolloutRecipe)
    conditioning: ConditioningOptions = field(default_factory=ConditioningOptions)
    compile: CompileOptions = field(default_factory=CompileOptions)
    report: ReportOptions = field(default_factory=ReportOptions)
    force: bool = False
    vecnormalize: Path | None = None  # statistics file; default: found beside the model (rl-zoo3 layout)
    no_vecnormalize: bool = False
    trust_pickle: bool = False  # load the zip with SB3's own loader (runs pickled code)
    env_module: str | None = None  # imported before making the env (it registers env_id)
    env_kwargs: dict[str, Any] | None = None  # None: env_kwargs.yml beside the model, if any

    def input_paths(self) -> tuple[Path | str | None, ...]:
        """The files the build reads (an output must never replace them or a directory holding them)."""
        return (self.model, self.vecnormalize, self.recipe.calibration_file)


@dataclass(frozen=True)
class BuildResult:
    """The written bundle and what the build measured."""

    bundle_dir: Path
    manifest: Manifest
    validation: Validation
    timings: dict[str, float]
    report: ReportResult
    notes: tuple[str, ...] = ()


STAGES = ("load model", "extract policy", "roll out observations", "condition for int8", "export ONNX",
          "convert (onnx2tf)", "quantize int8", "validate int8", "check Edge TPU", "compile Edge TPU",
          "write bundle", "report (closed loop)")


@dataclass(frozen=True)
class _Prepared:
    source: ModelSource
    env: EnvSpec
    agent: LoadedAgent
    graph: PolicyGraph
    sets: ObservationSets
    conditioned: Conditioned


def build(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    """Run every stage; the bundle appears at ``options.output`` only on success."""
    progress = progress or Progress(total=len(STAGES))
    options.recipe.check()
    with staged_directory(options.output, force=options.force, inputs=options.input_paths()) as stage, \
            scratch_directory("edgekit-") as scratch:
        prepared = _prepare(options, progress)
        int8 = _convert(prepared, stage, scratch, progress)
        validation, notes = _package(options, prepared, int8, stage, progress)
        report = _report(options, prepared, stage, progress)
        manifest = Manifest.read(stage)
    return BuildResult(bundle_dir=Path(options.output), manifest=manifest, validation=validation,
                       timings=dict(progress.timings), report=report, notes=tuple(notes))


@dataclass(frozen=True)
class LoadedModel:
    """What the load stage found: the model's source and layout, its config, the env and the agent."""

    source: ModelSource
    config: dict[str, Any]
    env: EnvSpec
    agent: LoadedAgent
    notes: tuple[str, ...] = ()  # what was adapted to read or play an older agent, one line each

    def describe(self, env_given: bool) -> str:
        agent, source = self.agent, self.source
        return (f"{agent.algorithm.name} {agent.policy_class}, {agent.observation_space.describe()} -> "
                f"{agent.action_space.describe()} (saved by SB3 {agent.sb3_version})"
                + ("" if source.layout == "zip" else f"; {source.describe()}")
                + (f"; env {self.env.describe()}" if not env_given or self.env.kwargs else ""))


def load_model(options: BuildOptions) -> LoadedModel:
    """The load stage (also ``edgekit calibrate``'s): source layout, zoo config, env, the agent itself."""
    from edgekit.host.env_versions import resolve_env
    from edgekit.host.loading import load_agent
    from edgekit.host.loading.source import resolve_source

    source = resolve_source(options.model)
    config = _zoo_config(source)
    env = _env_spec(options, source, config)
    agent = load_agent(source.model, trust_pickle=options.trust_pickle)
    resolved = resolve_env(env, agent.observation_space, agent.action_space, _training_std(options, source, agent))
    from edgekit.core.env_wrappers import device_notes

    notes = agent.notes + resolved.notes + tuple(
        f"the env is wrapped as in training: {line}" for line in device_notes(resolved.spec.wrappers))
    return LoadedModel(source, config, resolved.spec, agent, notes)


def _training_std(options: BuildOptions, source: ModelSource, agent: LoadedAgent) -> Any:
    """The per-feature standard deviations of the agent's VecNormalize statistics, if it has readable ones
    (they tell which features varied in training); the extract stage reports unreadable ones."""
    import numpy as np

    from edgekit.core.errors import EdgekitError
    from edgekit.host.loading.vecnormalize import load_vecnormalize

    path = None if options.no_vecnormalize else (options.vecnormalize or source.vecnormalize)
    if path is None or agent.observation_space.kind not in ("box", "dict"):
        return None
    try:
        norm = load_vecnormalize(path, agent.observation_space)
    except EdgekitError:
        return None
    return None if norm is None else np.asarray(norm.std)


def extract_float_policy(options: BuildOptions, loaded: LoadedModel) -> tuple[PolicyGraph, str]:
    """The extract stage (also ``edgekit calibrate``'s): the float actor with its VecNormalize and image
    input, and a line saying what it is."""
    from edgekit.stages.extract import extract_policy
    from edgekit.stages.image_decision import image_input_for

    image = image_input_for(loaded.agent, loaded.env)
    normalize, used = _vecnormalize(options, loaded.source, loaded.config, loaded.agent)
    if image is not None and normalize is not None:
        raise UnsupportedModelError("VecNormalize'd image observations are not supported",
                                    hint="pass --no-vecnormalize if it normalized rewards only")
    graph = extract_policy(loaded.agent, normalize, image)
    detail = f"{graph.input_size} -> {graph.output_size} {graph.output}, post-process {graph.postprocess}" \
        + (f"; VecNormalize from {used}" if normalize is not None else "") + _image_note(image)
    return graph, detail


def _prepare(options: BuildOptions, progress: Progress) -> _Prepared:
    """load -> extract -> rollouts -> condition."""
    from edgekit.stages.condition import condition
    from edgekit.stages.rollouts import collect_observations

    with progress.stage(STAGES[0]) as note:
        loaded = load_model(options)
        note.detail = loaded.describe(env_given=options.env_id is not None)
    for line in loaded.notes:
        progress.info(f"  note: {line}")
    with progress.stage(STAGES[1]) as note:
        graph, note.detail = extract_float_policy(options, loaded)
    agent, env = loaded.agent, loaded.env
    with progress.stage(STAGES[2]) as note:
        sets = collect_observations(agent, graph, env, options.recipe, progress)
        note.detail = f"{len(sets.calibration)} calibration + {len(sets.held_out)} held-out observations"
    with progress.stage(STAGES[3]) as note:
        conditioned = condition(graph, sets, agent.action_space, options.conditioning)
        note.detail = ", ".join(k.replace("_", " ") for k in conditioned.applied) or "none (plain conversion)"
    return _Prepared(loaded.source, env, agent, graph, sets, conditioned)


def _image_note(image: Any) -> str:
    if image is None:
        return ""
    return (f"; {image.layout} {'x'.join(map(str, image.shape))} images"
            + (" (SB3 transposed them to CHW)" if image.transposed else "")
            + f", x/{image.divisor:g} folded into the int8 input, NHWC model")


def _zoo_config(source: ModelSource) -> dict[str, Any]:
    """An rl-zoo3 / hub config.yml, when there is one; it must not name unreproduced transforms."""
    from edgekit.host.loading.zoo_config import check_zoo_config, read_zoo_config

    if source.config is None:
        return {}
    config = read_zoo_config(source.config)
    check_zoo_config(config, source.config)
    return config


def _env_spec(options: BuildOptions, source: ModelSource, config: dict[str, Any]) -> EnvSpec:
    """``--env`` (or the id the layout names), ``--env-module``, ``--env-kwargs`` or env_kwargs.yml, and the
    training's observation wrappers that edgekit reproduces (config.yml's env_wrapper)."""
    from edgekit.core.errors import UsageError
    from edgekit.host.loading.zoo_config import read_env_kwargs, zoo_wrappers

    env_id = options.env_id or source.env_id
    if not env_id:
        raise UsageError(f"which environment was {source.model.name} trained on?",
                         hint="pass --env ENV_ID, e.g. --env Pendulum-v1")
    if options.env_kwargs is not None:
        kwargs = options.env_kwargs
    else:
        kwargs = read_env_kwargs(source.env_kwargs) if source.env_kwargs is not None else {}
    wrappers = zoo_wrappers(config, source.config) if source.config is not None else ()
    return EnvSpec(env_id, options.env_module, kwargs, wrappers)


def _vecnormalize(options: BuildOptions, source: ModelSource, config: dict[str, Any],
                  agent: LoadedAgent) -> tuple[Any, str]:
    """The observation normalization the policy was trained with, if any (explicit, or in its layout)."""
    from edgekit.core.errors import ModelFileError
    from edgekit.host.loading.vecnormalize import load_vecnormalize

    if options.no_vecnormalize:
        return None, ""
    path = options.vecnormalize or source.vecnormalize
    if path is None:
        if config.get("normalize") not in (None, False, "false", "False"):
            raise ModelFileError(f"{source.config} says the agent was trained behind VecNormalize "
                                 f"(normalize: {config['normalize']!r}) but no vecnormalize.pkl is beside the model",
                                 hint="pass --vecnormalize STATS.pkl (the policy needs the training statistics), "
                                 "or --no-vecnormalize if you know better")
        return None, ""
    if agent.observation_space.kind not in ("box", "dict"):
        raise UnsupportedModelError(
            f"VecNormalize statistics ({path}) with {agent.observation_space.describe()} observations are not "
            "supported (SB3 normalizes Box and Dict observations only)",
            hint="pass --no-vecnormalize if the model was not trained behind VecNormalize")
    return load_vecnormalize(path, agent.observation_space), str(path)


def _convert(prepared: _Prepared, stage: Path, scratch: Path, progress: Progress) -> Int8Model:
    """export ONNX -> onnx2tf -> int8 TFLite, each checked against the previous."""
    from edgekit.bundle import layout
    from edgekit.stages.channels import uses_channels
    from edgekit.stages.condition import model_inputs
    from edgekit.stages.convert import convert_to_tensorflow
    from edgekit.stages.export_onnx import export_onnx
    from edgekit.stages.quantize import quantize_int8

    conditioned, sets = prepared.conditioned, prepared.sets
    held_out_inputs = model_inputs(sets.held_out, conditioned.preprocess)
    with progress.stage(STAGES[4]) as note:
        onnx_model = export_onnx(conditioned.graph, held_out_inputs, stage / layout.ONNX_MODEL)
        note.detail = f"opset {onnx_model.opset}, max |onnx - torch| {onnx_model.max_abs_error:.1e}"
    with progress.stage(STAGES[5]) as note:
        tf_model = convert_to_tensorflow(onnx_model, held_out_inputs, scratch)
        note.detail = f"max |tf - onnx| {tf_model.max_abs_error:.1e}"
    with progress.stage(STAGES[6]) as note:
        calibration_inputs = model_inputs(sets.calibration, conditioned.preprocess)
        int8 = quantize_int8(tf_model, calibration_inputs, conditioned.preprocess, stage / layout.CPU_MODEL,
                             binary=conditioned.graph.binary_inputs if "binary_inputs" in conditioned.applied else (),
                             per_channel=uses_channels(conditioned.graph.module))
        note.detail = f"ops {_op_summary(int8.ops)}; int8 in/out, no float tensors"
    return int8


def _package(options: BuildOptions, prepared: _Prepared, int8: Int8Model, stage: Path,
             progress: Progress) -> tuple[Validation, list[str]]:
    """validate -> Edge TPU check -> compile -> report and manifest."""
    from edgekit.bundle import layout
    from edgekit.edgetpu.check import check_model
    from edgekit.runtime.policy import EdgePolicy
    from edgekit.runtime.verify import kernel_spread_steps
    from edgekit.stages import write_bundle
    from edgekit.stages.validate import summary_line, validate_int8

    agent, conditioned, sets = prepared.agent, prepared.conditioned, prepared.sets
    with progress.stage(STAGES[7]) as note:
        write_bundle.save_observations(sets, stage / layout.CALIBRATION)
        write_bundle.write_new_manifest(stage, agent, conditioned.graph, prepared.env, int8, sets, conditioned.applied)
        policy = EdgePolicy.load(stage, device="cpu")  # the device's own path, on the staged bundle
        validation = validate_int8(policy, prepared.graph, conditioned, sets)
        note.detail = summary_line(validation)
    with progress.stage(STAGES[8]) as note:
        check = check_model(stage / layout.CPU_MODEL)
        note.detail = (f"{check.tpu_share:.0%} of {len(check.ops)} ops predicted on the Edge TPU"
                       + ("" if check.fully_mappable else f"; {check.placement}"))
    notes: list[str] = [] if check.fully_mappable else [_placement_note(check)]
    with progress.stage(STAGES[9]) as note:
        compiled, note.detail = _compile(options.compile, stage, notes)
    with progress.stage(STAGES[10]) as note:
        report = {
            "schema": BUILD_REPORT_SCHEMA,
            "schema_version": layout.REPORT_SCHEMA_VERSION,
            "validation": validation.metrics,
            "conditioning": conditioned.applied,
            "edgetpu_check": {**check.to_dict(), "model": layout.CPU_MODEL},  # in the bundle, not the staging dir
            "edgetpu_compile": compiled,
            "timings_s": dict(progress.timings),
        }
        write_bundle.write_json(stage / layout.REPORT_JSON, report)
        write_bundle.save_verification(sets, validation.int8_outputs, stage / layout.VERIFY,
                                       kernel_spread_steps(policy, sets.held_out[:write_bundle.VERIFY_SAMPLES]))
        write_bundle.refresh_hashes(stage)
        note.detail = str(options.output)
    return validation, notes


def _placement_note(check: Any) -> str:
    """What a model the Edge TPU cannot run fully means for the user, naming the activation behind the cut."""
    from edgekit.host.activations import CPU_ONLY_OPS

    cut = check.ops[check.cut_index] if check.cut_index is not None else None
    cause = ""
    if cut is not None and cut.op in CPU_ONLY_OPS:
        cause = (f"; {cut.op} comes from the policy's {CPU_ONLY_OPS[cut.op]} activation (ReLU, Tanh, Sigmoid, "
                 "SiLU, LeakyReLU map fully)")
    return (f"the int8 model is fully int8 but the Edge TPU cannot run all of it: {check.placement}{cause}; "
            "edgetpu_compiler would put the rest on the CPU, and the CPU int8 model runs anywhere")


def _report(options: BuildOptions, prepared: _Prepared, stage: Path, progress: Progress) -> ReportResult:
    """The full quantization-error report (closed loop included) into the staged bundle."""
    from edgekit.report.build_report import write_report

    with progress.stage(STAGES[11]) as note:
        result = write_report(stage, prepared.source.model, prepared.env, options.report.episodes,
                              options.recipe.seed, options.report.thresholds, out_dir=None,
                              bundle_path=options.output)
        loop = result.report.get("closed_loop") or {}
        score = loop.get("normalized_score") if isinstance(loop, dict) else None
        note.detail = (f"normalized score {score:.3f} over {options.report.episodes} episodes"
                       if isinstance(score, (int, float)) else "closed loop skipped")
    return result


def _compile(options: CompileOptions, stage: Path, notes: list[str]) -> tuple[dict[str, Any] | None, str]:
    """Run the compiler when asked and installed; a missing compiler is a note, not a failure."""
    from edgekit.edgetpu.bundle_compile import compile_bundle
    from edgekit.edgetpu.compiler import CompilerMissingError

    if not options.enabled:
        return None, "skipped (--no-compile)"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compile_bundle(stage, compiler=options.compiler, timeout=options.timeout,
                                    min_runtime=options.min_runtime, require_full_tpu=options.require_full_tpu)
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    except CompilerMissingError as exc:
        if options.compiler:
            raise
        notes.append(f"no Edge TPU compiler here, so the bundle holds the CPU int8 model only; to compile: {exc.hint}")
        return None, "skipped: edgetpu_compiler is not installed (see the note below)"
    log = result.log
    detail = (f"compiler {result.compiler_version}: all ops mapped to the Edge TPU" if log.fully_mapped
              else f"compiler {result.compiler_version}: {log.cpu_op_count} ops left on the CPU")
    return result.to_dict(), detail


def _op_summary(ops: tuple[str, ...]) -> str:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    return ", ".join(f"{name} x{n}" for name, n in counts.items())
