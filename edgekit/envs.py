"""Gymnasium environments and spaces on the build host.

Making an env by id with helpful errors, turning gymnasium spaces into
``SpaceSpec``, and checking that an env fits a model. gymnasium is imported
inside the functions: the runtime only needs it for ``edgekit run --env``.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import numpy as np

from edgekit.bundle.image import env_layout
from edgekit.env_spec import EnvSpec
from edgekit.errors import (
    EdgekitError,
    EnvironmentFailedError,
    EnvironmentMismatchError,
    MissingDependencyError,
    UnsupportedModelError,
)
from edgekit.spaces import BOX, DICT, DISCRETE, MULTI_BINARY, MULTI_DISCRETE, SpaceSpec, bounds_problem, is_image

FLOAT32_MAX_ISH = 3.4e38  # older gym wrote np.finfo(np.float32).max where gymnasium writes inf


def make_env(env: EnvSpec | str, render_mode: str | None = None) -> Any:
    """``gymnasium.make`` for a registered id, ``module:Id`` or ``module:Class``, with one-line errors.

    A class is made through a gymnasium ``EnvSpec`` (so it gets gymnasium's
    checks and wrappers, and no time limit unless it registers one). The env
    is the user's code: what it raises when made, reset or stepped (kwargs it
    rejects, a name that is no env) is a one-line ``EnvironmentFailedError``
    naming the env, never an "edgekit bug".
    """
    spec = env if isinstance(env, EnvSpec) else EnvSpec(env)
    gym = _gymnasium()
    if spec.module is not None:
        _import(spec.module, "--env-module")
    target = _resolve(spec, gym)
    extra = {"render_mode": render_mode} if render_mode is not None else {}
    try:
        made = gym.make(target, **extra, **spec.kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise MissingDependencyError(
            f"{spec.id} needs a package that is not installed: {exc}",
            hint="install the gymnasium extra it names, e.g. pip install 'gymnasium[box2d]'",
        ) from None
    except Exception as exc:  # the env's constructor, or gymnasium refusing what it built
        raise env_failed(spec, "when made", exc) from exc
    return _env_errors_wrapper(gym)(made, spec)


def env_failed(spec: EnvSpec, when: str, exc: BaseException) -> EnvironmentFailedError:
    """The env raised ``exc``: say which env, with which kwargs, and what to check."""
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    if spec.kwargs:
        hint = "the env rejects these kwargs: check --env-kwargs (or the env_kwargs.yml beside the model)"
    elif ":" in spec.id:
        hint = "--env module:Name must name a gymnasium.Env subclass (or a function returning one)"
    else:
        hint = "check that the env works with gymnasium.make on its own"
    return EnvironmentFailedError(f"the env {spec.describe()} failed {when}: {detail}", hint=hint)


@functools.cache
def _env_errors_wrapper(gym: Any) -> type:
    """A wrapper whose reset and step turn the env's own exceptions into ``env_failed`` errors."""

    class EnvErrors(gym.Wrapper):
        def __init__(self, env: Any, spec: EnvSpec) -> None:
            super().__init__(env)
            self._edgekit_spec = spec

        def reset(self, **kwargs: Any) -> Any:
            try:
                return self.env.reset(**kwargs)
            except EdgekitError:
                raise
            except Exception as exc:
                raise env_failed(self._edgekit_spec, "on reset", exc) from exc

        def step(self, action: Any) -> Any:
            try:
                return self.env.step(action)
            except EdgekitError:
                raise
            except Exception as exc:
                raise env_failed(self._edgekit_spec, "on step", exc) from exc

    return EnvErrors


def _gymnasium() -> Any:
    try:
        import gymnasium as gym
    except ImportError:
        raise MissingDependencyError(
            "gymnasium is not installed", hint="pip install gymnasium (or edgekit-sb3[host])"
        ) from None
    return gym


def _resolve(spec: EnvSpec, gym: Any) -> Any:
    """What ``gymnasium.make`` takes: a registered id, or an ``EnvSpec`` whose entry point is the class."""
    if ":" not in spec.id:
        if spec.id not in gym.registry:
            raise _unknown_id(spec.id, gym)
        return spec.id
    module_name, name = spec.id.split(":", 1)
    module = _import(module_name, "--env")
    value = getattr(module, name, None)
    if isinstance(value, type) or (callable(value) and not isinstance(value, str)):
        from gymnasium.envs.registration import EnvSpec as GymEnvSpec

        return GymEnvSpec(id=f"edgekit-custom/{name}", entry_point=value)
    if name in gym.registry:  # gymnasium's own "module:Id" form: importing the module registered it
        return name
    raise EnvironmentMismatchError(f"{module_name} has no env class {name!r} and did not register an id {name!r}",
                                   hint="pass --env module:EnvClass, or a registered id with --env-module MODULE")


def _import(module: str, option: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EnvironmentMismatchError(f"{option}: cannot import {module} ({type(exc).__name__}: {exc})",
                                       hint="install the package that defines the environment, or fix the "
                                       "module path") from None


def _unknown_id(env_id: str, gym: Any) -> EnvironmentMismatchError:
    """Unknown id: name the current version when only the version changed (LunarLander-v2 -> -v3)."""
    name = env_id.rsplit("-v", 1)[0]
    versions = sorted(i for i in gym.registry if i.rsplit("-v", 1)[0] == name and i != env_id)
    if versions:
        newest = versions[-1]
        return EnvironmentMismatchError(
            f"Gymnasium has no {env_id!r}: this gymnasium registers {', '.join(versions)} instead",
            hint=f"pass --env {newest} (check its changelog: versions can differ in dynamics or spaces)")
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    suggestion = f"did you mean {', '.join(close)}?" if close else "see gymnasium.registry for the ids"
    return EnvironmentMismatchError(f"unknown Gymnasium environment id {env_id!r}", hint=suggestion)


def space_spec(space: Any, what: str, nested: bool = False) -> SpaceSpec:
    """Describe a gymnasium Box, Discrete, MultiDiscrete, MultiBinary or (non-nested) Dict space.

    What SB3 itself cannot take (nested Dicts, a multi-dimensional MultiDiscrete,
    Tuple spaces) is refused here with the reason.
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        box = SpaceSpec(
            kind=BOX,
            shape=tuple(int(v) for v in space.shape),
            dtype=str(space.dtype),
            low=tuple(float(v) for v in np.asarray(space.low, dtype=np.float64).reshape(-1)),
            high=tuple(float(v) for v in np.asarray(space.high, dtype=np.float64).reshape(-1)),
        )
        problem = bounds_problem(box)
        if problem is not None:
            raise UnsupportedModelError(f"the {what} space {problem}", hint="give the env a Box with consistent "
                                        "bounds (gymnasium's Box checks them) and save the model with it again")
        return box
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
    if a.kind == b.kind == BOX and is_image(a) and is_image(b) and env_layout(a.shape, b.shape) is not None:
        return True  # the same image, channel-first as SB3 stores it or channel-last (VecTransposeImage)
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
