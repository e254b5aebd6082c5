"""Gymnasium environments and spaces on the build host.

Making an env by id with helpful errors, turning gymnasium spaces into
``SpaceSpec``, and checking that an env fits a model. gymnasium is imported
inside the functions: the runtime only needs it for ``edgekit run --env``.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from edgekit.errors import EnvironmentMismatchError, MissingDependencyError, UnsupportedModelError
from edgekit.spaces import BOX, DICT, DISCRETE, MULTI_BINARY, MULTI_DISCRETE, SpaceSpec

FLOAT32_MAX_ISH = 3.4e38  # older gym wrote np.finfo(np.float32).max where gymnasium writes inf


def make_env(env_id: str, render_mode: str | None = None) -> Any:
    """``gymnasium.make`` with one-line errors for unknown ids and missing extras."""
    try:
        import gymnasium as gym
    except ImportError:
        raise MissingDependencyError(
            "gymnasium is not installed", hint="pip install gymnasium (or edgekit[host])"
        ) from None
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        suggestion = f"did you mean {', '.join(close)}?" if close else "see gymnasium.registry for the ids"
        raise EnvironmentMismatchError(f"unknown Gymnasium environment id {env_id!r}", hint=suggestion)
    try:
        return gym.make(env_id, render_mode=render_mode)
    except gym.error.DependencyNotInstalled as exc:
        raise MissingDependencyError(
            f"{env_id} needs a package that is not installed: {exc}",
            hint="install the gymnasium extra it names, e.g. pip install 'gymnasium[box2d]'",
        ) from None


def space_spec(space: Any, what: str, nested: bool = False) -> SpaceSpec:
    """Describe a gymnasium Box, Discrete, MultiDiscrete, MultiBinary or (non-nested) Dict space.

    What SB3 itself cannot take (nested Dicts, a multi-dimensional MultiDiscrete,
    Tuple spaces) is refused here with the reason.
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return SpaceSpec(
            kind=BOX,
            shape=tuple(int(v) for v in space.shape),
            dtype=str(space.dtype),
            low=tuple(float(v) for v in np.asarray(space.low, dtype=np.float64).reshape(-1)),
            high=tuple(float(v) for v in np.asarray(space.high, dtype=np.float64).reshape(-1)),
        )
    if isinstance(space, spaces.Discrete):
        return SpaceSpec(kind=DISCRETE, shape=(), dtype=str(space.dtype), n=int(space.n), start=int(space.start))
    if isinstance(space, spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec)
        if nvec.ndim != 1:
            raise _unsupported(f"{what} space MultiDiscrete with a {nvec.ndim}-D nvec is not supported (SB3's "
                               "one-hot and MultiCategorical take a 1-D nvec)")
        start = np.asarray(getattr(space, "start", np.zeros_like(nvec)))
        if np.any(start != 0):
            raise _unsupported(f"{what} space MultiDiscrete with a non-zero start is not supported (SB3 ignores "
                               "start: its one-hot and its actions count from 0)")
        return SpaceSpec(kind=MULTI_DISCRETE, shape=(int(nvec.size),), dtype=str(space.dtype),
                         nvec=tuple(int(v) for v in nvec))
    if isinstance(space, spaces.MultiBinary):
        return SpaceSpec(kind=MULTI_BINARY, shape=tuple(int(v) for v in space.shape), dtype=str(space.dtype))
    if isinstance(space, spaces.Dict):
        if nested:
            raise _unsupported(f"nested Dict {what} spaces are not supported (nor by SB3)")
        return SpaceSpec(kind=DICT, shape=(), dtype="", spaces=tuple(
            (str(key), space_spec(sub, f"{what} key {key!r}", nested=True)) for key, sub in space.spaces.items()))
    reason = " (nor by SB3)" if isinstance(space, spaces.Tuple) else ""
    raise _unsupported(f"{what} space {type(space).__name__} is not supported{reason}; Box, Discrete, "
                       "MultiDiscrete, MultiBinary and Dict are")


def _unsupported(message: str) -> UnsupportedModelError:
    return UnsupportedModelError(message, hint="see the README's support table")


def check_env_fits(env_id: str, env: Any, observation_space: SpaceSpec, action_space: SpaceSpec) -> None:
    """The env must produce the observations and take the actions the model was trained on."""
    for what, model_space, env_space in (
        ("observation", observation_space, space_spec(env.observation_space, "observation")),
        ("action", action_space, space_spec(env.action_space, "action")),
    ):
        if not _same_space(model_space, env_space):
            raise EnvironmentMismatchError(
                f"the model was trained with {what}s {_long(model_space)} but {env_id} has {_long(env_space)}",
                hint="pass the --env the model was trained on",
            )


def _same_space(a: SpaceSpec, b: SpaceSpec) -> bool:
    if a.kind != b.kind or a.shape != b.shape:
        return False
    if a.kind == DISCRETE:
        return a.n == b.n and a.start == b.start
    if a.kind == MULTI_DISCRETE:
        return a.nvec == b.nvec
    if a.kind == MULTI_BINARY:
        return True
    if a.kind == DICT:
        ours, theirs = dict(a.spaces or ()), dict(b.spaces or ())
        return ours.keys() == theirs.keys() and all(_same_space(ours[k], theirs[k]) for k in ours)
    return bool(np.allclose(_bounds(a.low), _bounds(b.low), rtol=1e-6)
                and np.allclose(_bounds(a.high), _bounds(b.high), rtol=1e-6))


def _bounds(values: tuple[float, ...] | None) -> np.ndarray:
    """Bounds with gym's old float32-max stand-ins for infinity read as infinity."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.abs(arr) >= FLOAT32_MAX_ISH, np.copysign(np.inf, arr), arr)


def _long(space: SpaceSpec) -> str:
    if space.kind != BOX:
        return space.describe()
    low, high = np.asarray(space.low), np.asarray(space.high)
    if low.size <= 4:
        return f"{space.describe()} in [{np.array2string(low, precision=3)}, {np.array2string(high, precision=3)}]"
    return space.describe()
