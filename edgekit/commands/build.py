"""``edgekit build MODEL.zip --env ENV_ID``: SB3 zip -> int8 bundle."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.commands.arg_types import seed
from edgekit.commands.env_options import add_env_arguments
from edgekit.core.errors import UsageError
from edgekit.report.thresholds import add_arguments as add_threshold_arguments

if TYPE_CHECKING:
    from edgekit.stages.condition import ConditioningOptions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="convert an SB3 model.zip into a fully int8 bundle",
        description="Load an SB3 model (PPO, A2C, SAC, TD3, DDPG, DQN; detected from the file), extract its "
        "deterministic policy, export it to ONNX, convert it with onnx2tf, quantize it to a fully int8 TFLite "
        "model calibrated on observations from rollouts in --env, validate it, and write a bundle directory.",
    )
    p.add_argument("model", help="the .zip written by SB3's model.save(), an rl-zoo3 run folder (ALGO/ENV_ID_1/) "
                   "or Hugging Face hub snapshot folder holding one, or hf://ORG/REPO (needs edgekit-sb3[hub])")
    add_env_arguments(p, "the environment the model was trained on: a Gymnasium id (Pendulum-v1), module:Id, "
                      "or module:EnvClass (default: the id a zoo folder or hub repo names)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="bundle directory to write (default: <model name>.bundle next to the model)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load the model with SB3's own loader, which runs code pickled in the file; only for a "
                   "file you trust (default: a restricted loader that never runs pickled code)")
    p.add_argument("--vecnormalize", type=Path, default=None, metavar="STATS.pkl",
                   help="VecNormalize statistics the policy was trained with (default: vecnormalize.pkl found "
                   "beside the model, as rl-zoo3 saves it)")
    p.add_argument("--no-vecnormalize", action="store_true",
                   help="ignore VecNormalize statistics found beside the model")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="calibration rollout recipe: control (default for episodes <= 1,000 steps) or long-episodes "
                   "(see calibration/README.md)")
    p.add_argument("--calibration-steps", type=int, default=None, metavar="N",
                   help="rollout observations used to calibrate int8 ranges (default: the recipe's, 2000 for control; "
                   "500 for images)")
    p.add_argument("--validation-steps", type=int, default=None, metavar="N",
                   help="held-out rollout observations used to score the int8 model (default: 2000; 500 for "
                        "images)")
    p.add_argument("--random-action-share", type=float, default=None, metavar="P",
                   help="share of random actions during rollouts, for coverage (default: the recipe's, 0.1)")
    p.add_argument("--calibration", "--calibration-data", dest="calibration_data", type=Path, default=None,
                   metavar="FILE", help="calibrate on a saved set (`edgekit calibrate -o FILE.npz`) or recorded "
                   "observations (.npy, shape (N, *obs_shape)) instead of rollouts; held-out observations still "
                   "come from rollouts")
    p.add_argument("--seed", type=seed, default=0, help="seed of the rollouts; same seed, same bundle (default: 0)")
    p.add_argument("--no-input-scaling", action="store_true",
                   help="do not map each observation feature to the int8 input range (plain conversion)")
    p.add_argument("--no-output-range", action="store_true",
                   help="do not bound the output range (clip/pre-tanh clamp/centering) before int8")
    p.add_argument("--no-split-input", action="store_true",
                   help="never feed features as coarse + fine int8 parts (one int8 value per feature)")
    p.add_argument("--no-finetune", action="store_true", help="skip the int8-aware distillation")
    p.add_argument("--no-per-channel", action="store_true",
                   help="keep every layer a per-tensor FULLY_CONNECTED (no 1x1 convolutions with per-channel "
                   "weights, which are not verified on a real Edge TPU; see docs/fidelity.md)")
    p.add_argument("--no-widen", action="store_true",
                   help="do not widen hidden layers (smaller, faster on the CPU; less precise, see docs/fidelity.md)")
    p.add_argument("--compiler", default=None, metavar="PATH",
                   help="edgetpu_compiler to run (default: the one on PATH; none installed -> CPU-only bundle)")
    p.add_argument("--no-compile", action="store_true", help="do not run the Edge TPU compiler")
    p.add_argument("--compile-timeout", type=float, default=180.0, metavar="S",
                   help="seconds the compiler may take (default: 180)")
    p.add_argument("--min-runtime", type=int, default=None, metavar="N",
                   help="oldest Edge TPU runtime version to target (edgetpu_compiler -m)")
    p.add_argument("--require-full-tpu", action="store_true",
                   help="fail unless every op is mapped to the Edge TPU (default: warn)")
    p.add_argument("--report-episodes", type=int, default=10, metavar="N",
                   help="closed-loop episodes of the float, int8 and random policies in the report (default: 10; "
                   "0 skips the closed loop)")
    add_threshold_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and the bundle path")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.core.env_spec import parse_env_kwargs
    from edgekit.core.progress import Progress
    from edgekit.pipeline import STAGES, BuildOptions, CompileOptions, ReportOptions, build
    from edgekit.report.summary import summary_lines
    from edgekit.report.thresholds import from_args
    from edgekit.stages.rollouts import recipe_for

    if args.calibration_data is not None and not args.calibration_data.is_file():
        raise UsageError(f"calibration data {args.calibration_data} does not exist",
                         hint="pass a .npy file of recorded observations, shape (N, *obs_shape)")
    if max(args.calibration_steps or 0, args.validation_steps or 0) > 1_000_000:
        raise UsageError("--calibration-steps and --validation-steps are limited to 1,000,000")
    output = args.output or _default_output(args.model)
    if args.report_episodes < 0:
        raise UsageError("--report-episodes must be 0 or more")
    options = BuildOptions(
        report=ReportOptions(episodes=args.report_episodes, thresholds=from_args(args)),
        compile=CompileOptions(enabled=not args.no_compile, compiler=args.compiler, timeout=args.compile_timeout,
                               min_runtime=args.min_runtime, require_full_tpu=args.require_full_tpu),
        conditioning=conditioning_options(args),
        model=args.model,
        env_id=args.env_id,
        env_module=args.env_module,
        env_kwargs=parse_env_kwargs(args.env_kwargs),
        output=output,
        force=args.force,
        trust_pickle=args.trust_pickle,
        vecnormalize=args.vecnormalize,
        no_vecnormalize=args.no_vecnormalize,
        recipe=replace(recipe_for(args.env_id or _layout_env_id(args.model), args.recipe, steps=args.calibration_steps,
                                  random_action_share=args.random_action_share, seed=args.seed)[0],
                       held_out_steps=args.validation_steps, calibration_file=args.calibration_data),
    )
    progress = Progress(total=len(STAGES), quiet=args.quiet)
    result = build(options, progress)
    total = sum(result.timings.values())
    for line in summary_lines(result.report.report):
        progress.info(line)
    for note in result.notes:
        progress.info(f"note: {note}")
    progress.info(f"bundle written to {result.bundle_dir} in {total:.1f} s (report: {result.bundle_dir}/report.html)")
    if args.quiet:
        print(result.bundle_dir, file=sys.stdout)
    return result.report.exit_code


def _layout_env_id(model: str) -> str | None:
    """The env id a local zoo folder or hub snapshot names (for the recipe's choice; the build checks it)."""
    from edgekit.core.errors import EdgekitError
    from edgekit.host.loading.source import HUB_PREFIX, resolve_source

    if model.startswith(HUB_PREFIX):
        return None
    try:
        return resolve_source(model).env_id
    except EdgekitError:  # the build reports it with its own one-line error
        return None


def _default_output(model: str) -> Path:
    """``MODEL.bundle`` beside a zip; ``NAME.bundle`` here for a folder or a hub repository."""
    from edgekit.host.loading.source import HUB_PREFIX

    if model.startswith(HUB_PREFIX):
        return Path(model[len(HUB_PREFIX):].partition("@")[0].rsplit("/", 1)[-1] + ".bundle")
    path = Path(model)
    return path.with_suffix(".bundle") if path.suffix == ".zip" else path.parent / (path.name + ".bundle")


def conditioning_options(args: argparse.Namespace) -> ConditioningOptions:
    """The int8 conditioning the --no-* flags leave on."""
    from edgekit.stages.condition import ConditioningOptions

    return ConditioningOptions(input_scaling=not args.no_input_scaling, output_range=not args.no_output_range,
                               input_split=0 if args.no_split_input else ConditioningOptions.input_split,
                               finetune=not args.no_finetune, widen=not args.no_widen,
                               per_channel=not args.no_per_channel)
