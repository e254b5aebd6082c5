"""``edgekit calibrate MODEL.zip --env ENV_ID -o calib.npz``: write a reusable calibration set, or inspect one.

A calibration set is what ``edgekit build --calibration calib.npz`` sets its int8
ranges (and fits its distillation) on, instead of fresh rollouts: a set rolled
out once and reused, or observations recorded on the real robot and saved with
numpy (``calibration/README.md``). ``--inspect`` prints what a set holds, so a
user can see whether it covers the states the robot will meet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekit.commands.arg_types import seed
from edgekit.commands.env_options import add_env_arguments
from edgekit.core.errors import EdgekitError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="roll a policy out and save its observations as a reusable calibration set (or inspect one)",
        description="Roll the policy out in --env (the recipe's steps, random-action share and seed) and write "
        "the observations to -o as a calibration set for `edgekit build --calibration`. With --inspect, print "
        "the per-feature statistics of a saved set (or of any .npy/.npz of observations) instead.",
    )
    p.add_argument("model", nargs="?", help="the SB3 model .zip, an rl-zoo3 run folder or hub snapshot folder, or "
                   "hf://ORG/REPO (not needed with --inspect)")
    add_env_arguments(p, "the env to roll out in: a Gymnasium id, module:Id or module:EnvClass (default: the id a "
                      "zoo folder or hub repo names)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE.npz", help="calibration set to write")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="named rollout recipe (see `calibration/README.md`; default: chosen from the env's "
                   "episode length)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="observations to collect (default: recipe)")
    p.add_argument("--random-action-share", type=float, default=None, metavar="P",
                   help="share of random actions, for coverage (default: recipe)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the rollouts (default: 0)")
    p.add_argument("--vecnormalize", type=Path, default=None, metavar="STATS.pkl",
                   help="VecNormalize statistics (default: found beside the model); the set holds raw observations")
    p.add_argument("--trust-pickle", action="store_true", help="load the model with SB3's own loader")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--inspect", type=Path, default=None, metavar="FILE",
                   help="print what a calibration set (or .npy/.npz of observations) holds, and exit")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.inspect is not None:
        return _inspect(args.inspect)
    if args.model is None or args.output is None:
        raise UsageError("edgekit calibrate needs MODEL and -o FILE.npz (or --inspect FILE)",
                         hint="e.g. edgekit calibrate model.zip --env Pendulum-v1 -o calib.npz")
    _check_output(args)
    import numpy as np

    from edgekit import __version__
    from edgekit.bundle.overwrite import staged_file
    from edgekit.core.env_spec import parse_env_kwargs
    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, extract_float_policy, load_model
    from edgekit.stages.rollouts import collect_calibration, describe_observations, recipe_for, save_calibration_set

    options = BuildOptions(model=args.model, env_id=args.env_id, output=args.output, env_module=args.env_module,
                           env_kwargs=parse_env_kwargs(args.env_kwargs),
                           vecnormalize=args.vecnormalize, trust_pickle=args.trust_pickle)
    loaded = load_model(options)
    graph, _detail = extract_float_policy(options, loaded)
    recipe, name = recipe_for(loaded.env, args.recipe, steps=args.steps,
                              random_action_share=args.random_action_share, seed=args.seed)
    observations, episodes = collect_calibration(loaded.agent, graph, loaded.env, recipe, Progress(quiet=True))
    stats = loaded.source.vecnormalize if args.vecnormalize is None else args.vecnormalize
    with staged_file(args.output) as staging:
        save_calibration_set(staging, observations, {
            "env_id": loaded.env.id, "env": loaded.env.to_dict(), "recipe": name, "steps": int(len(observations)),
            "episodes": episodes, "random_action_share": recipe.random_action_share, "seed": recipe.seed,
            "observation_shape": list(loaded.agent.observation_space.shape), "model_sha256": loaded.agent.sha256,
            "vecnormalize": str(stats) if stats is not None else None, "edgekit": __version__,
            "note": "raw observations (before VecNormalize) as flat features: the flattened Box, one-hots and 0/1 "
                    "values for discrete spaces, uint8 pixels in the env's layout for images",
        })
    print(f"calibration set {args.output}: recipe {name!r}, {episodes} episodes of {loaded.env.describe()}")
    for line in describe_observations(np.asarray(observations)):
        print(line)
    print(f"use it with: edgekit build {args.model} {loaded.env.cli_arguments()} --calibration {args.output}")
    return 0


def _check_output(args: argparse.Namespace) -> None:
    """An existing -o is replaced only with --force, and only when it is a calibration set and no input."""
    from edgekit.bundle.overwrite import check_replaceable_file

    output = args.output
    if output.is_dir():
        raise UsageError(f"{output} is a directory", hint="pass -o FILE.npz, a file to write")
    if output.exists() or output.is_symlink():
        if not args.force:
            raise UsageError(f"{output} exists", hint="pass --force to replace it")
        check_replaceable_file(output, (args.model, args.vecnormalize), _is_calibration_set, "calibration set")


def _is_calibration_set(path: Path) -> bool:
    from edgekit.stages.rollouts import CALIBRATION_SET_FORMAT, read_calibration_meta

    try:
        return read_calibration_meta(path).get("format") == CALIBRATION_SET_FORMAT
    except EdgekitError:
        return False


def _inspect(path: Path) -> int:
    import numpy as np

    from edgekit.stages.rollouts import describe_observations, read_calibration_meta, read_observation_array

    data = read_observation_array(path)
    meta = read_calibration_meta(path)
    if meta:
        print(f"{path}: " + json.dumps(meta, sort_keys=True))
    flat = data.reshape(len(data), -1) if data.ndim > 1 else data.reshape(-1, 1)
    if not np.all(np.isfinite(flat)):
        print(f"warning: {int((~np.isfinite(flat)).any(axis=1).sum())} observations are not finite")
    for line in describe_observations(flat[np.isfinite(flat).all(axis=1)]):
        print(line)
    return 0
