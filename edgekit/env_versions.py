"""The env a model was trained in, as this gymnasium makes it: renamed and retired ids.

Published agents name the ids of their time: ``LunarLander-v2`` (gymnasium
registers ``-v3`` now), MuJoCo ``Ant-v3`` (registered, but it needs the retired
``mujoco-py``; ``-v4`` and ``-v5`` run on the ``mujoco`` bindings), ``PandaReach-v1``
(panda-gym registers ``-v3``). When the id a model names cannot be made here,
``resolve_env`` tries the other versions of the same env, nearest first, and uses
the first whose spaces fit the model exactly as far as the policy's computation
goes (``edgekit.envs.space_difference``), with one line saying so. When none
does as it is, it looks for the constructor options known to restore an older
observation layout (``LAYOUT_OPTIONS``) and stops with the ``--env``/``--env-kwargs``
that do: options can change rewards or dynamics too, so the user decides.
Otherwise it stops with what each version returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from edgekit.env_spec import EnvSpec
from edgekit.errors import EdgekitError, EnvironmentMismatchError, MissingDependencyError
from edgekit.spaces import SpaceSpec

_VERSIONED = re.compile(r"^(?P<name>[A-Za-z0-9_./-]+?)-v(?P<version>\d+)$")

# Constructor options that restore an older version's observation layout, per current id. Measured:
# Ant-v3 (mujoco-py) returned 111 features, its 84 contact forces (cfrc_ext) included; Ant-v4 returns 27
# unless use_contact_forces=True (then 111, the same layout; MuJoCo >= 2 leaves them zero, as the
# published Ant-v3 agents' VecNormalize statistics show they were); Ant-v5 drops the world body (105).
LAYOUT_OPTIONS: Mapping[str, tuple[dict[str, Any], ...]] = {
    "Ant-v4": ({"use_contact_forces": True},),
}


@dataclass(frozen=True)
class ResolvedEnv:
    """The env to calibrate and play in, and a line for each thing the user should know about it (another
    version than the model named; observation bounds that differ but do not matter)."""

    spec: EnvSpec
    notes: tuple[str, ...] = ()


class EnvironmentLayoutError(EnvironmentMismatchError):
    """No version of the env fits the model as it is; ``suggestion`` (when found) is one that does with
    options, for the user (or a sweep that follows the fix) to pass."""

    def __init__(self, message: str, hint: str | None = None, suggestion: EnvSpec | None = None) -> None:
        super().__init__(message, hint)
        self.suggestion = suggestion


def resolve_env(spec: EnvSpec, observation_space: SpaceSpec, action_space: SpaceSpec) -> ResolvedEnv:
    """``spec`` when it can be made here; else the nearest other version that fits (see the module)."""
    from edgekit.envs import make_env

    if spec.imports_code or _VERSIONED.match(spec.id) is None:
        return ResolvedEnv(spec)  # the user's own env (or an unversioned id): taken as given
    try:
        return ResolvedEnv(spec, _bounds_note(make_env(spec), spec, observation_space))
    except EnvironmentMismatchError as exc:
        if _registered(spec.id):
            raise
        problem: EdgekitError = exc  # unknown id: try the other versions
        why = "is not registered in this gymnasium"
    except MissingDependencyError as exc:
        problem, why = exc, f"cannot be made here ({_short(exc.message)})"
    return _other_version(spec, observation_space, action_space, problem, why)


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[:limit - 3].rstrip() + "..."


def _other_version(spec: EnvSpec, observation_space: SpaceSpec, action_space: SpaceSpec, problem: EdgekitError,
                   why: str) -> ResolvedEnv:
    from edgekit.envs import make_env

    candidates = _versions(spec.id)
    if not candidates:
        raise problem
    tried: list[str] = []
    for candidate in candidates:
        found = _try(make_env, replace(spec, id=candidate), observation_space, action_space)
        if found is True:
            chosen = replace(spec, id=candidate)
            return ResolvedEnv(chosen, (
                f"{spec.id} {why}: using {candidate}, whose spaces fit the model (versions can differ in "
                "dynamics or rewards: check the env's changelog)",
                *_bounds_note(make_env(chosen), chosen, observation_space)))
        tried.append(f"{candidate} {found}")
    wanted = f"the model's {_observed(observation_space)} -> {action_space.describe()}"
    for candidate in candidates:
        for options in LAYOUT_OPTIONS.get(candidate, ()):
            kwargs = {**spec.kwargs, **options}
            option_spec = replace(spec, id=candidate, kwargs=kwargs)
            if _try(make_env, option_spec, observation_space, action_space) is True:
                raise EnvironmentLayoutError(
                    f"{spec.id} {why}; {'; '.join(tried)}, not {wanted}; "
                    f"{candidate} with {json.dumps(options, sort_keys=True)} returns the model's layout",
                    hint=f"pass {option_spec.cli_arguments()} (the options may change rewards or dynamics too: "
                         "check the env's documentation)",
                    suggestion=option_spec)
    raise EnvironmentLayoutError(
        f"{spec.id} {why}, and no version of it here returns {wanted}: {'; '.join(tried)}",
        hint=f"install what {spec.id} needs, or pass --env/--env-kwargs for an env that returns that layout")


def _try(make_env: Any, spec: EnvSpec, observation_space: SpaceSpec, action_space: SpaceSpec) -> bool | str:
    """True when ``spec`` makes an env that fits; else what it returns instead (or why it cannot be made)."""
    from edgekit.envs import env_fits, space_spec

    try:
        env = make_env(spec)
    except MissingDependencyError:
        return "cannot be made either"
    except EdgekitError as exc:
        return f"cannot be made ({_short(exc.message, 240)})"
    try:
        if env_fits(env, observation_space, action_space):
            return True
        obs = space_spec(env.observation_space, "observation")
        act = space_spec(env.action_space, "action")
        return f"returns {_observed(obs)} -> {act.describe()}"
    except EdgekitError as exc:
        return f"returns spaces edgekit does not take ({exc.message})"
    finally:
        env.close()


def _bounds_note(env: Any, spec: EnvSpec, observation_space: SpaceSpec) -> tuple[str, ...]:
    """Closes ``env``; the line saying its observation bounds differ in a way the policy ignores, if they do."""
    from edgekit.envs import observation_bounds_note

    try:
        note = observation_bounds_note(spec.id, observation_space, env)
    finally:
        env.close()
    return (note,) if note else ()


def _observed(space: SpaceSpec) -> str:
    return space.describe()


def _registered(env_id: str) -> bool:
    import gymnasium as gym

    return env_id in gym.registry


def _versions(env_id: str) -> list[str]:
    """Other registered versions of ``env_id``'s env, nearest first (newer before older at equal distance):
    a newer version is usually the same env ported, the nearest the least changed."""
    import gymnasium as gym

    from edgekit.envs import register_family

    match = _VERSIONED.match(env_id)
    if match is None:
        return []
    try:
        register_family(env_id)
    except EdgekitError:
        return []
    name, version = match["name"], int(match["version"])
    found = []
    for other in list(gym.registry):
        m = _VERSIONED.match(other)
        if m is not None and m["name"] == name and int(m["version"]) != version:
            found.append((abs(int(m["version"]) - version), -int(m["version"]), other))
    return [other for *_key, other in sorted(found)]
