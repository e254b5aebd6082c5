"""Stage: observations for calibration and validation, by rolling the policy out.

Int8 scales must fit what the policy sees when it acts, not the observation
space's bounds (often infinite, or far wider than reached). So the float
policy is rolled out in the env, with a small share of random actions so that
states next to the policy's usual path are covered too. The held-out set comes
from separate episodes (another seed) and is never used for calibration.

Both sets hold the flat float features the network reads (``edgekit.observations``:
a flattened Box, one-hots for Discrete / MultiDiscrete, Dict keys concatenated),
one row per observation; ``ObservationEncoder.decode`` gives the observations back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifacts import LoadedAgent, ObservationSets, PolicyGraph
from edgekit.envs import check_env_fits, make_env
from edgekit.errors import InputError, UsageError
from edgekit.observations import ObservationEncoder
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
    agent: LoadedAgent, graph: PolicyGraph, env_id: str, recipe: RolloutRecipe, progress: Progress
) -> ObservationSets:
    """Roll out in ``env_id`` twice (calibration, held-out) with distinct seeds."""
    recipe.check()
    env = make_env(env_id)
    try:
        check_env_fits(env_id, env, agent.observation_space, agent.action_space)
        post = PostProcessor(graph.postprocess, agent.action_space)
        encoder = ObservationEncoder(agent.observation_space)
        if recipe.calibration_file is not None:
            calib, calib_eps = load_observations(recipe.calibration_file, encoder), 0
        else:
            calib, calib_eps = _rollout(env, graph, post, encoder, recipe.calibration_steps, recipe, recipe.seed,
                                        progress)
        held, held_eps = _rollout(env, graph, post, encoder, recipe.held_out_steps, recipe, recipe.seed + 10_007,
                                  progress)
    finally:
        env.close()
    facts = {
        "source": str(recipe.calibration_file.name) if recipe.calibration_file else "policy rollouts",
        "env_id": env_id,
        "seed": recipe.seed,
        "random_action_share": recipe.random_action_share,
        "calibration_steps": int(len(calib)),
        "calibration_episodes": calib_eps,
        "held_out_steps": int(len(held)),
        "held_out_episodes": held_eps,
    }
    return ObservationSets(calibration=calib, held_out=held, facts=facts)


def load_observations(path: Path, encoder: ObservationEncoder) -> np.ndarray:
    """Observations recorded elsewhere (e.g. on the real robot), as flat features (N, F) float32.

    ``.npy``, or ``.npz`` holding one array (or a ``calibration`` array, as in a bundle's calibration.npz;
    for a Dict space, one array per key). An array is either the observations (N, *observation shape) or,
    for non-Box spaces, already the flat features (N, F) (a bundle's calibration set).
    """
    if not path.is_file():
        raise UsageError(f"calibration data {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = loaded.files
                keys = encoder.keys
                if keys is not None and set(keys) <= set(names) and "calibration" not in names:
                    loaded = {k: np.asarray(loaded[k]) for k in keys}
                else:
                    key = "calibration" if "calibration" in names else (names[0] if len(names) == 1 else None)
                    if key is None:
                        raise UsageError(f"{path} holds several arrays {names}; keep one, or name it 'calibration'")
                    loaded = loaded[key]
    except UsageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"cannot read calibration data {path}: {exc}", hint="save it with numpy.save") from None
    flat = _as_features(path, loaded, encoder)
    if len(flat) < 100 or not np.all(np.isfinite(flat)):
        raise UsageError(f"calibration data {path} needs at least 100 finite observations (has {len(flat)})")
    return flat


def _as_features(path: Path, loaded: Any, encoder: ObservationEncoder) -> np.ndarray:
    shape = encoder.space.shape
    expected = f"expected (N, {', '.join(map(str, shape))})" if encoder.keys is None else \
        f"expected one array per key {list(encoder.keys)}, or the flat features (N, {encoder.features})"
    if isinstance(loaded, dict):
        return _encoded(path, loaded, encoder)
    data = np.asarray(loaded)
    if encoder.identity:
        size = int(np.prod(shape))
        if data.ndim < 1 or data.size % size or data.shape[-len(shape):] != tuple(shape) and data.shape[-1] != size:
            raise UsageError(f"calibration data {path} has shape {data.shape}; {expected}")
        return data.reshape(-1, size).astype(np.float32)
    if data.ndim == 2 and data.shape[1] == encoder.features and (encoder.keys is not None or shape != data.shape[1:]):
        flat = data.astype(np.float32)
        again, _ = encoder.encode(encoder.decode(flat))  # the flat features of real observations only
        if not np.array_equal(again, flat):
            raise UsageError(f"calibration data {path} is not the flat features of {encoder.space.describe()} "
                             "observations (one-hots and 0/1 values)")
        return flat
    if encoder.keys is not None:
        raise UsageError(f"calibration data {path} has shape {data.shape}; {expected}")
    return _encoded(path, data, encoder)


def _encoded(path: Path, observations: Any, encoder: ObservationEncoder) -> np.ndarray:
    try:
        flat, single = encoder.encode(observations)
    except InputError as exc:
        raise UsageError(f"calibration data {path} does not fit the observation space: {exc.message}") from None
    if single:
        raise UsageError(f"calibration data {path} holds one observation; it needs at least 100")
    return flat


def _rollout(
    env: Any,
    graph: PolicyGraph,
    post: PostProcessor,
    encoder: ObservationEncoder,
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
        try:
            flat = encoder.encode(obs)[0][0]
        except InputError as exc:
            raise UsageError(f"the environment returned an observation outside its space: {exc.message}") from None
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
