"""Gymnasium environments and spaces on the build host.

Making an env by id with helpful errors, turning gymnasium spaces into
``SpaceSpec``, and checking that an env fits a model. gymnasium is imported
inside the functions: the runtime only needs it for ``edgekit run --env``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from typing import Any

import numpy as np

from edgekit.bundle.image_spec import env_layout
from edgekit.core.env_spec import EnvSpec
from edgekit.core.env_wrappers import REPRODUCED, WrapperSpec
from edgekit.core.errors import (
    EdgekitError,
    EnvironmentFailedError,
    EnvironmentMismatchError,
    EnvironmentUnavailableError,
    MissingDependencyError,
    UnsupportedModelError,
)
from edgekit.core.spaces import BOX, DICT, DISCRETE, MULTI_BINARY, MULTI_DISCRETE, SpaceSpec, bounds_problem, is_image

FLOAT32_MAX_ISH = 3.4e38  # older gym wrote np.finfo(np.float32).max where gymnasium writes inf

# Known breakages between env packages and the simulators they drive: (package whose code fails, simulator,
# first failing version, requirement that works, why). Measured: gymnasium-robotics 1.4.2's robot envs
# (FetchReach-v4, ...) fail in set_joint_qpos with mujoco 3.12 to 4.0.1 (an enum comparison); 3.11 works.
KNOWN_BREAKAGES: tuple[tuple[str, str, tuple[int, ...], str, str], ...] = (
    ("gymnasium_robotics", "mujoco", (3, 12), "mujoco<3.12",
     "gymnasium-robotics' robot envs fail with mujoco >= 3.12 (measured with gymnasium-robotics 1.4.2; 3.11 works)"),
)

# Packages that register env ids when imported, by the ids' name prefix: (module, pip package, prefixes).
# edgekit imports one of these (never a module a file names) when an id of its family is not registered.
ENV_PACKAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("gymnasium_robotics", "gymnasium-robotics", ("Fetch", "HandManipulate", "HandReach", "AdroitHand",
                                                  "AntMaze", "PointMaze", "FrankaKitchen")),
    ("panda_gym", "panda-gym", ("Panda",)),
)


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
    except (gym.error.DependencyNotInstalled, ImportError) as exc:  # gymnasium's retired mujoco-py ids: ImportError
        raise MissingDependencyError(
            f"{spec.id} needs a package that is not installed: {_first_line(exc)}",
            hint="install the gymnasium extra it names, e.g. pip install 'gymnasium[box2d]'",
        ) from None
    except EdgekitError:
        raise
    except Exception as exc:  # the env's constructor, or gymnasium refusing what it built
        raise env_failed(spec, "when made", exc) from None
    made = _env_errors_wrapper(gym)(made, spec)
    if not spec.wrappers:
        return made
    return apply_wrappers(made, spec.wrappers)


def env_failed(spec: EnvSpec, when: str, exc: BaseException) -> EdgekitError:
    """The env raised ``exc``: say which env, with which kwargs, and what to check. With kwargs or a
    ``module:Name`` the user's input is the likely cause; a registered id failing on its own is its
    packages' problem (``_failed`` names where, and the versions involved)."""
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    if spec.kwargs:
        hint = "the env rejects these kwargs: check --env-kwargs (or the env_kwargs.yml beside the model)"
    elif ":" in spec.id:
        hint = "--env module:Name must name a gymnasium.Env subclass (or a function returning one)"
    else:
        return _failed(spec, when, exc)
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


def _first_line(exc: BaseException) -> str:
    """An exception's message on one line (gymnasium's DependencyNotInstalled holds a tuple of sentences)."""
    text = " ".join(str(a) for a in exc.args) if exc.args else type(exc).__name__
    return " ".join(text.split())


def _failed(spec: EnvSpec, when: str, exc: BaseException) -> EnvironmentUnavailableError:
    """A registered env whose own code fails: where, and with which versions of the packages involved."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    where = ""
    if last is not None:
        path = last.filename.replace("\\", "/")
        short = path.split("site-packages/", 1)[-1] if "site-packages/" in path else path.rsplit("/", 1)[-1]
        where = f" in {short}:{last.lineno} ({last.name})"
    versions = _package_versions(frames)
    message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return EnvironmentUnavailableError(
        f"{spec.describe()} {'could not be made here' if when == 'when made' else 'failed ' + when}: "
        f"{type(exc).__name__}{': ' + message if message else ''}"
        f"{where}" + (f" (with {versions})" if versions else ""),
        hint=_known_breakage(frames) or "the env's package does not work with the packages installed here: "
        "install versions that work together (see the env package's requirements)")


def _known_breakage(frames: Any) -> str | None:
    """The requirement that works, when the failure is a known breakage (``KNOWN_BREAKAGES``)."""
    from importlib import metadata

    paths = [f.filename.replace("\\", "/") for f in frames]
    for package, simulator, first, works, why in KNOWN_BREAKAGES:
        if not any(f"/{package}/" in path for path in paths):
            continue
        try:
            installed = tuple(int(p) for p in metadata.version(simulator).split(".")[:2] if p.isdigit())
        except metadata.PackageNotFoundError:
            continue
        if installed >= first:
            return f"pip install '{works}': {why}"
    return None


def _package_versions(frames: Any) -> str:
    """``gymnasium-robotics 1.4.2, mujoco 4.0.1``: the distributions whose code the traceback went through,
    and the simulators its lines call."""
    from importlib import metadata

    names: list[str] = []
    for frame in frames:
        path = frame.filename.replace("\\", "/")
        top = path.split("site-packages/", 1)[1].split("/", 1)[0] if "site-packages/" in path else ""
        if top and not top.endswith(".py"):
            names.append(top)
        names += [sim for sim in ("mujoco", "pybullet", "Box2D") if f"{sim}." in (frame.line or "")]
    found = []
    for name in dict.fromkeys(names):
        if name in ("gymnasium", "numpy"):
            continue
        dists = metadata.packages_distributions().get(name, [])
        for dist in sorted(dists, key=lambda d: (d.lower().replace("_", "-") != name.lower(), d)) or [name]:
            try:
                found.append(f"{dist} {metadata.version(dist)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return ", ".join(found)


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
            register_family(spec.id)
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


def register_family(env_id: str) -> None:
    """Import the package of ``ENV_PACKAGES`` that registers ids like ``env_id`` (FetchReach-v4:
    gymnasium-robotics); a one-line error names it when it is not installed."""
    import importlib
    import importlib.util

    for module, package, prefixes in ENV_PACKAGES:
        if not env_id.startswith(prefixes):
            continue
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f"{env_id} is an environment of {package}, which is not installed",
                                         hint=f"pip install {package}")
        try:
            registered = importlib.import_module(module)
        except Exception as exc:  # a package that fails on import: one line, not its traceback
            raise EnvironmentUnavailableError(f"{package} (needed for {env_id}) fails on import: "
                                              f"{type(exc).__name__}: {_first_line(exc)}") from None
        register = getattr(_gymnasium(), "register_envs", None)
        if register is not None:
            register(registered)  # a no-op that keeps linters from calling the import unused


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
    return UnsupportedModelError(message, hint="see docs/supported.md")


def check_env_fits(env_id: str, env: Any, observation_space: SpaceSpec, action_space: SpaceSpec) -> None:
    """The env must produce the observations and take the actions the model was trained on, as far as the
    policy's computation goes (``space_difference``)."""
    for what, model_space, env_space in (
        ("observation", observation_space, space_spec(env.observation_space, "observation")),
        ("action", action_space, space_spec(env.action_space, "action")),
    ):
        difference = space_difference(model_space, env_space, what)
        if difference is not None:
            raise EnvironmentMismatchError(
                f"the model was trained with {what}s {_long(model_space)} but {env_id} has {_long(env_space)}"
                + (f" ({difference})" if difference else ""),
                hint="pass the --env the model was trained on",
            )


def env_fits(env: Any, observation_space: SpaceSpec, action_space: SpaceSpec) -> bool:
    """``check_env_fits`` as a yes/no."""
    return all(space_difference(m, space_spec(e, what), what) is None for what, m, e in (
        ("observation", observation_space, env.observation_space), ("action", action_space, env.action_space)))


def space_difference(model: SpaceSpec, env: SpaceSpec, what: str) -> str | None:
    """None when the policy computes the same on the env's values as on those it was trained on; else what
    differs ("" when the short descriptions already show it).

    Decided by what the network reads: a non-image observation Box is cast to float and flattened by SB3's
    preprocessing, so its shape matters and its bounds and float dtype do not (old gym wrote infinite
    bounds where gymnasium writes finite ones, e.g. LunarLander). Action bounds set the clip or the unscale
    of every action, and an image Box's bounds and dtype decide SB3's image preprocessing (/255): those
    must match.
    """
    if model.kind == env.kind == BOX and is_image(model) and is_image(env):
        same = env_layout(model.shape, env.shape) is not None  # channel-first as SB3 stores it, or the env's
        return None if same else ""
    if model.kind != env.kind or model.shape != env.shape:
        return ""
    if model.kind == DISCRETE:
        return None if model.n == env.n and model.start == env.start else ""
    if model.kind == MULTI_DISCRETE:
        return None if model.nvec == env.nvec else ""
    if model.kind == MULTI_BINARY:
        return None
    if model.kind == DICT:
        ours, theirs = dict(model.spaces or ()), dict(env.spaces or ())
        if ours.keys() != theirs.keys():
            return f"keys {sorted(ours)} vs {sorted(theirs)}"
        for key in ours:
            difference = space_difference(ours[key], theirs[key], what)
            if difference is not None:
                return f"key {key!r}: " + (difference or f"{ours[key].describe()} vs {theirs[key].describe()}")
        return None
    if what == "observation" and not is_image(model) and not is_image(env):
        return None  # shape checked above; bounds and dtype do not enter the network
    return bounds_difference(model, env)


def bounds_difference(a: SpaceSpec, b: SpaceSpec, limit: int = 2) -> str | None:
    """The Box bounds that differ, e.g. ``low[6] -inf vs 0, high[6] inf vs 1``; None when they agree."""
    parts = []
    for side, ours, theirs in (("low", a.low, b.low), ("high", a.high, b.high)):
        x, y = _bounds(ours), _bounds(theirs)
        differ = ~np.isclose(x, y, rtol=1e-6, atol=0.0)  # equal infinities are close
        parts += [f"{side}[{i}] {_num(x[i])} vs {_num(y[i])}" for i in np.flatnonzero(differ)]
    if not parts:
        return None
    more = f" and {len(parts) - limit} more of {2 * len(x)} bounds" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def _num(value: float) -> str:
    return f"{value:.4g}"


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


def observation_bounds_note(env_id: str, model: SpaceSpec, env: Any) -> str | None:
    """One line when the env's observation bounds differ from the model's in a way the policy ignores."""
    theirs = space_spec(env.observation_space, "observation")
    pairs = [(k, m, dict(theirs.spaces or ()).get(k)) for k, m in model.spaces or ()] if model.kind == DICT \
        else [("", model, theirs)]
    found = []
    for key, ours, other in pairs:
        if other is not None and ours.kind == other.kind == BOX and not is_image(ours) \
                and ours.shape == other.shape and (difference := bounds_difference(ours, other)):
            found.append(f"{key}: {difference}" if key else difference)
    if not found:
        return None
    return (f"{env_id}'s observation bounds differ from the model's (model vs env: {'; '.join(found)}); "
            "the policy network does not read observation bounds, so it computes the same actions")


def apply_wrappers(env: Any, wrappers: tuple[WrapperSpec, ...]) -> Any:
    """``env`` inside each wrapper, in order (as rl-zoo3 wraps: after ``gymnasium.make`` and its time limit)."""
    for wrapper in wrappers:
        known = REPRODUCED[wrapper.name]
        try:
            cls = getattr(importlib.import_module(known.module), known.name)
        except ImportError:
            env.close()
            raise MissingDependencyError(f"the agent's env is wrapped in {wrapper.name}, from {known.module}, "
                                         "which is not installed", hint=f"pip install '{known.package}'") from None
        env = cls(env, **wrapper.kwargs)
    return env
