"""Stage: observations for calibration and validation, by rolling the policy out.

Int8 scales must fit what the policy sees when it acts, not the observation
space's bounds (often infinite, or far wider than reached). So the float
policy is rolled out in the env, with a small share of random actions so that
states next to the policy's usual path are covered too. The held-out set comes
from separate episodes (another seed) and is never used for calibration.

Both sets hold the flat float features the network reads (``edgekit.core.observations``:
a flattened Box, one-hots for Discrete / MultiDiscrete, Dict keys concatenated),
one row per observation; ``ObservationEncoder.decode`` gives the observations back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.env_spec import EnvSpec
from edgekit.core.errors import InputError, UsageError
from edgekit.core.observations import ObservationEncoder
from edgekit.core.postprocess import PostProcessor
from edgekit.core.progress import Progress
from edgekit.host.gym_envs import check_env_fits, make_env
from edgekit.host.loading.loaded_agent import LoadedAgent
from edgekit.stages.artifacts import ObservationSets, PolicyGraph

DEFAULT_STEPS = 2000
IMAGE_DEFAULT_STEPS = 500  # image observations: kilobytes each, and every set is run through a CNN several times


@dataclass(frozen=True)
class RolloutRecipe:
    """How to sample observations; defaults suit small control tasks (None: the default for the observations,
    ``DEFAULT_STEPS``, or ``IMAGE_DEFAULT_STEPS`` for images)."""

    calibration_steps: int | None = None
    held_out_steps: int | None = None
    random_action_share: float = 0.1
    seed: int = 0
    calibration_file: Path | None = None  # recorded observations to calibrate on instead of rollouts
    max_episode_steps: int | None = None  # end calibration episodes early (None: as the env ends them)
    min_episodes: int = 8  # calibration rows come from at least this many episodes (see ``keep_share``)

    def steps(self, image: bool) -> tuple[int, int]:
        """(calibration, held-out) steps, the defaults filled in."""
        default = IMAGE_DEFAULT_STEPS if image else DEFAULT_STEPS
        return (default if self.calibration_steps is None else self.calibration_steps,
                default if self.held_out_steps is None else self.held_out_steps)

    def keep_share(self, steps: int, episode_steps: int | None) -> float:
        """Share of the visited states kept, so that ``steps`` rows span ``min_episodes`` whole episodes of
        up to ``episode_steps`` (the env's time limit; None: unknown, every state is kept).

        Episodes run to their end: the late states of an episode (a car reaching the hilltop, a walker at
        speed) are part of what the policy sees, and cutting episodes short left them out of the ranges
        (a TQC MountainCarContinuous agent: 29 % of held-out observations outside the calibration range with
        episodes cut at 250 steps, 0.05 % with whole ones). Subsampling keeps the set's size, and with it the
        conditioning's time, while spreading it over more episodes (more varied starts)."""
        limits = [x for x in (episode_steps, self.max_episode_steps) if x is not None]
        if not limits or self.min_episodes <= 1:
            return 1.0
        return min(1.0, steps / float(self.min_episodes * min(limits)))

    def check(self) -> None:
        if self.calibration_steps is not None and self.calibration_steps < 100:
            raise UsageError("--calibration-steps must be at least 100", hint=f"the default is {DEFAULT_STEPS} "
                             f"({IMAGE_DEFAULT_STEPS} for images)")
        if self.held_out_steps is not None and self.held_out_steps < 100:
            raise UsageError("--validation-steps must be at least 100", hint=f"the default is {DEFAULT_STEPS} "
                             f"({IMAGE_DEFAULT_STEPS} for images)")
        if not 0.0 <= self.random_action_share <= 1.0:
            raise UsageError("--random-action-share must lie in [0, 1]")
        if self.max_episode_steps is not None and self.max_episode_steps < 10:
            raise UsageError("episodes of fewer than 10 steps cannot calibrate anything")
        if self.min_episodes < 1:
            raise UsageError("calibration needs at least one episode")


@dataclass(frozen=True)
class NamedRecipe:
    """A rollout recipe for a kind of environment (``edgekit calibrate --recipe``, ``build --recipe``)."""

    name: str
    kind: str
    recipe: RolloutRecipe


# Measured on the classic-control agents of scripts/bench_fidelity.py (calibration/README.md has the numbers).
RECIPES = {
    r.name: r
    for r in (
        NamedRecipe("control", "episodes of <= 1,000 steps: classic control, Pendulum, CartPole, MuJoCo; "
                    "2,000 observations (500 for images) from >= 8 whole episodes, 10 % random actions",
                    RolloutRecipe()),
        NamedRecipe("long-episodes", "episodes of > 1,000 steps (e.g. BipedalWalker): 5,000 observations from "
                    ">= 10 whole episodes", RolloutRecipe(calibration_steps=5000, min_episodes=10)),
    )
}


def recipe_for(env: EnvSpec | str, name: str | None = None, **overrides: Any) -> tuple[RolloutRecipe, str]:
    """The named recipe (default: by the env's registered episode length), with overrides that are not None."""
    if name is None:
        env_id = env.id if isinstance(env, EnvSpec) else env
        name = "long-episodes" if (_registered_episode_steps(env_id) or 0) > 1000 else "control"
    if name not in RECIPES:
        raise UsageError(f"unknown calibration recipe {name!r}", hint=f"one of: {', '.join(RECIPES)}")
    recipe = RECIPES[name].recipe
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "steps" in changes:
        changes["calibration_steps"] = changes.pop("steps")
    return replace(recipe, **changes), name


def _registered_episode_steps(env_id: str | None) -> int | None:
    try:
        import gymnasium as gym

        return gym.spec(env_id).max_episode_steps
    except Exception:  # unknown ids (and module:Class) fail later, with the env's own one-line error
        return None


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
        calibration_steps, held_out_steps = recipe.steps(image=graph.image is not None)
        encoder = _encoder(agent, graph)
        if recipe.calibration_file is not None:
            calib, calib_eps = load_observations(recipe.calibration_file, encoder), 0
            if graph.image is not None:
                calib = _as_pixels(calib, recipe.calibration_file)
        else:
            calib, calib_eps = _rollout(env, graph, post, encoder, calibration_steps, recipe, recipe.seed, progress)
        held, held_eps = _rollout(env, graph, post, encoder, held_out_steps,
                                  replace(recipe, max_episode_steps=None, min_episodes=1), recipe.seed + 10_007,
                                  progress)
    finally:
        env.close()
    facts = {
        "source": str(recipe.calibration_file.name) if recipe.calibration_file else "policy rollouts",
        "env_id": spec.id,
        "seed": recipe.seed,
        "random_action_share": recipe.random_action_share,
        "calibration_episode_cap": recipe.max_episode_steps if recipe.calibration_file is None else None,
        "calibration_min_episodes": recipe.min_episodes if recipe.calibration_file is None else None,
        "calibration_steps": int(len(calib)),
        "calibration_episodes": calib_eps,
        "held_out_steps": int(len(held)),
        "held_out_episodes": held_eps,
    }
    return ObservationSets(calibration=calib, held_out=held, facts=facts)


def collect_calibration(agent: LoadedAgent, graph: PolicyGraph, env_spec: EnvSpec | str, recipe: RolloutRecipe,
                        progress: Progress) -> tuple[np.ndarray, int]:
    """Calibration observations only (``edgekit calibrate``): the rollout the build would do, as flat
    features (images: uint8 pixels in the env's layout)."""
    recipe.check()
    spec = env_spec if isinstance(env_spec, EnvSpec) else EnvSpec(env_spec)
    env = make_env(spec)
    try:
        check_env_fits(spec.id, env, agent.observation_space, agent.action_space)
        post = PostProcessor(graph.postprocess, agent.action_space)
        steps, _held_out = recipe.steps(image=graph.image is not None)
        return _rollout(env, graph, post, _encoder(agent, graph), steps, recipe, recipe.seed, progress)
    finally:
        env.close()


def load_observations(path: Path, encoder: ObservationEncoder) -> np.ndarray:
    """Observations recorded elsewhere (e.g. on the real robot), as flat features (N, F) float32.

    ``.npy``, or ``.npz`` holding one array (or a ``calibration`` array, as in a bundle's calibration.npz;
    for a Dict space, one array per key). An array is either the observations (N, *observation shape) or,
    for non-Box spaces, already the flat features (N, F) (a bundle's calibration set).
    """
    loaded = read_observation_array(path, encoder.keys)
    flat = _as_features(path, loaded, encoder)
    if len(flat) < 100 or not np.all(np.isfinite(flat)):
        raise UsageError(f"calibration data {path} needs at least 100 finite observations (has {len(flat)})")
    return flat


def _encoder(agent: LoadedAgent, graph: PolicyGraph) -> ObservationEncoder:
    """The observations' encoder; images: a uint8 Box in the env's own layout (stored as pixels)."""
    if graph.image is None:
        return ObservationEncoder(agent.observation_space)
    return ObservationEncoder(replace(agent.observation_space, shape=tuple(graph.image.shape)))


def _as_pixels(flat: np.ndarray, path: Path) -> np.ndarray:
    """Recorded images as uint8; values that are not whole numbers in 0..255 are not pixels."""
    if flat.min() < 0 or flat.max() > 255 or not np.array_equal(flat, np.rint(flat)):
        raise UsageError(f"calibration data {path} holds values that are not uint8 pixels (0..255)",
                         hint="record the observations as the env returns them")
    return flat.astype(np.uint8)


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
    dtype = np.uint8 if graph.image is not None else np.float32  # images stay pixels: 4x less memory
    out = np.empty((steps, graph.input_size), dtype=dtype)
    keep = recipe.keep_share(steps, _time_limit(env))
    episodes, length, kept, visited = 1, 0, 0, 0
    while kept < steps:
        try:
            flat = np.asarray(obs, dtype=dtype).reshape(-1) if graph.image is not None else encoder.encode(obs)[0][0]
        except InputError as exc:
            raise UsageError(f"the environment returned an observation outside its space: {exc.message}") from None
        if keep >= 1.0 or rng.random() < keep:  # no draw when every state is kept (same sets as before)
            out[kept] = flat
            kept += 1
        if rng.random() < recipe.random_action_share:
            action = env.action_space.sample()
        else:
            action = post.one(graph.outputs(flat[None]))
        obs, _, terminated, truncated, _ = env.step(action)
        length += 1
        visited += 1
        if terminated or truncated or (recipe.max_episode_steps is not None and length >= recipe.max_episode_steps):
            obs, _ = env.reset()
            episodes, length = episodes + 1, 0
        if visited % 500 == 0:
            progress.tick(f"{kept}/{steps} observations")
    if dtype == np.float32 and not np.all(np.isfinite(out)):
        raise UsageError("the environment produced non-finite observations (NaN or inf) during rollouts")
    return out, episodes


def _time_limit(env: Any) -> int | None:
    """The env's registered episode length (its TimeLimit), if any."""
    spec = getattr(env, "spec", None)
    limit = getattr(spec, "max_episode_steps", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def read_observation_array(path: Path, keys: tuple[str, ...] | None = None) -> Any:
    """The observations of a ``.npy`` or ``.npz`` file, as stored: one array (an .npz's only array, or its
    ``calibration`` array), or for a Dict space's ``keys`` one array per key."""
    if not path.is_file():
        raise UsageError(f"calibration data {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return np.asarray(loaded)
        with loaded:
            names = [n for n in loaded.files if n != "meta"]  # a calibration set's metadata
            if keys is not None and set(keys) <= set(names) and "calibration" not in names:
                return {k: np.asarray(loaded[k]) for k in keys}
            key = "calibration" if "calibration" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise UsageError(f"{path} holds several arrays {names}; keep one, or name it 'calibration'")
            return np.asarray(loaded[key])
    except UsageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"cannot read calibration data {path}: {exc}", hint="save it with numpy.save") from None


CALIBRATION_SET_FORMAT = "edgekit-calibration-set"


def save_calibration_set(path: Path, observations: np.ndarray, facts: dict[str, Any]) -> None:
    """Write a reusable calibration set: ``calibration`` (N, size) float32 raw observations (as the env or
    robot gives them, before any VecNormalize) and ``meta``, a JSON string of where they came from."""
    import json

    meta = {"format": CALIBRATION_SET_FORMAT, "format_version": 1, **facts}
    with open(path, "wb") as handle:  # np.savez_compressed would append .npz to a name without it
        np.savez_compressed(handle, calibration=np.asarray(observations, dtype=np.float32),
                            meta=np.array(json.dumps(meta, sort_keys=True)))


def read_calibration_meta(path: Path) -> dict[str, Any]:
    """The ``meta`` of a calibration set (empty for a plain .npy / .npz of observations)."""
    import json

    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            return {}
        with data:
            if "meta" not in data.files:
                return {}
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, EOFError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read calibration set {path}: {exc}") from None
    return meta if isinstance(meta, dict) else {}


def describe_observations(observations: np.ndarray) -> list[str]:
    """Per-feature statistics of a calibration set, one line each (what ``edgekit calibrate`` prints)."""
    obs = np.asarray(observations, dtype=np.float64)
    lines = [f"{len(obs)} observations of {obs.shape[1]} features"]
    for i in range(obs.shape[1]):
        column = obs[:, i]
        p1, p99 = np.percentile(column, [1, 99])
        lines.append(f"  feature {i:3d}: min {column.min():+.4g}  p1 {p1:+.4g}  mean {column.mean():+.4g}  "
                     f"p99 {p99:+.4g}  max {column.max():+.4g}  std {column.std():.4g}")
    return lines
