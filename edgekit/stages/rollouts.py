"""Stage: observations for calibration and validation, by rolling the policy out.

Int8 scales must fit what the policy sees when it acts, not the observation
space's bounds (often infinite, or far wider than reached). So the float
policy is rolled out in the env, with a small share of random actions so that
states next to the policy's usual path are covered too. The held-out set comes
from separate episodes (another seed) and is never used for calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifacts import LoadedAgent, ObservationSets, PolicyGraph
from edgekit.env_spec import EnvSpec
from edgekit.envs import check_env_fits, make_env
from edgekit.errors import UsageError
from edgekit.postprocess import PostProcessor
from edgekit.progress import Progress


@dataclass(frozen=True)
class RolloutRecipe:
    """How to sample observations; defaults suit small control tasks."""

    calibration_steps: int = 2000
    held_out_steps: int = 2000
    random_action_share: float = 0.1
    seed: int = 0
    calibration_file: Path | None = None  # recorded observations to calibrate on instead of rollouts

    def check(self) -> None:
        if self.calibration_steps < 100:
            raise UsageError("--calibration-steps must be at least 100", hint="the default is 2000")
        if self.held_out_steps < 100:
            raise UsageError("--validation-steps must be at least 100", hint="the default is 2000")
        if not 0.0 <= self.random_action_share <= 1.0:
            raise UsageError("--random-action-share must lie in [0, 1]")


def collect_observations(
    agent: LoadedAgent, graph: PolicyGraph, env_spec: EnvSpec | str, recipe: RolloutRecipe, progress: Progress
) -> ObservationSets:
    """Roll out in the env twice (calibration, held-out) with distinct seeds."""
    recipe.check()
    spec = env_spec if isinstance(env_spec, EnvSpec) else EnvSpec(env_spec)
    env = make_env(spec)
    try:
        check_env_fits(spec.id, env, agent.observation_space, agent.action_space)
        post = PostProcessor(graph.postprocess, agent.action_space)
        if recipe.calibration_file is not None:
            calib, calib_eps = load_observations(recipe.calibration_file, agent.observation_space.shape), 0
        else:
            calib, calib_eps = _rollout(env, graph, post, recipe.calibration_steps, recipe, recipe.seed, progress)
        held, held_eps = _rollout(env, graph, post, recipe.held_out_steps, recipe, recipe.seed + 10_007, progress)
    finally:
        env.close()
    facts = {
        "source": str(recipe.calibration_file.name) if recipe.calibration_file else "policy rollouts",
        "env_id": spec.id,
        "seed": recipe.seed,
        "random_action_share": recipe.random_action_share,
        "calibration_steps": int(len(calib)),
        "calibration_episodes": calib_eps,
        "held_out_steps": int(len(held)),
        "held_out_episodes": held_eps,
    }
    return ObservationSets(calibration=calib, held_out=held, facts=facts)


def load_observations(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Observations recorded elsewhere (e.g. on the real robot): ``.npy``, or ``.npz`` holding one array
    (or a ``calibration`` array, as in a bundle's calibration.npz). Returns flat float32 (N, size)."""
    if not path.is_file():
        raise UsageError(f"calibration data {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = loaded.files
                key = "calibration" if "calibration" in names else (names[0] if len(names) == 1 else None)
                if key is None:
                    raise UsageError(f"{path} holds several arrays {names}; keep one, or name it 'calibration'")
                loaded = loaded[key]
    except UsageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"cannot read calibration data {path}: {exc}", hint="save it with numpy.save") from None
    data = np.asarray(loaded)
    size = int(np.prod(shape))
    if data.ndim < 1 or data.size % size or data.shape[-len(shape):] != tuple(shape) and data.shape[-1] != size:
        raise UsageError(f"calibration data {path} has shape {data.shape}; expected (N, {', '.join(map(str, shape))})")
    flat = data.reshape(-1, size).astype(np.float32)
    if len(flat) < 100 or not np.all(np.isfinite(flat)):
        raise UsageError(f"calibration data {path} needs at least 100 finite observations (has {len(flat)})")
    return flat


def _rollout(
    env: Any,
    graph: PolicyGraph,
    post: PostProcessor,
    steps: int,
    recipe: RolloutRecipe,
    seed: int,
    progress: Progress,
) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = np.empty((steps, graph.input_size), dtype=np.float32)
    episodes = 1
    for i in range(steps):
        flat = np.asarray(obs, dtype=np.float32).reshape(-1)
        out[i] = flat
        if rng.random() < recipe.random_action_share:
            action = env.action_space.sample()
        else:
            action = post.one(graph.outputs(flat[None]))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            episodes += 1
        if i % 500 == 0:
            progress.tick(f"{i}/{steps} steps")
    if not np.all(np.isfinite(out)):
        raise UsageError("the environment produced non-finite observations (NaN or inf) during rollouts")
    return out, episodes
