"""The env a model was trained in, as this gymnasium makes it: renamed and retired ids.

Published agents name the ids of their time: ``LunarLander-v2`` (gymnasium
registers ``-v3`` now), MuJoCo ``Ant-v3`` (registered, but it needs the retired
``mujoco-py``; ``-v4`` and ``-v5`` run on the ``mujoco`` bindings), ``PandaReach-v1``
(panda-gym registers ``-v3``). When the id a model names cannot be made here,
``resolve_env`` tries the other versions of the same env, nearest first, and uses
the first whose spaces fit the model exactly as far as the policy's computation
goes (``edgekit.host.gym_envs.space_difference``), with one line saying so. When none
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

import numpy as np

from edgekit.core.env_spec import EnvSpec
from edgekit.core.errors import (
    EdgekitError,
    EnvironmentMismatchError,
    EnvironmentUnavailableError,
    MissingDependencyError,
)
from edgekit.core.spaces import SpaceSpec

_VERSIONED = re.compile(r"^(?P<name>[A-Za-z0-9_./-]+?)-v(?P<version>\d+)$")

@dataclass(frozen=True)
class LayoutOption:
    """Constructor options of a current id that return an older version's observation layout."""

    options: dict[str, Any]
    returns: str  # what the restored features hold, in a few words
    restores: slice  # the features the options add to the default layout
    zero: bool  # whether those features are held at zero

    def fits_training(self, training_std: np.ndarray | None) -> bool | None:
        """Whether the restored features behave as in training, by the agent's VecNormalize statistics (a
        standard deviation of sqrt(epsilon) means the feature never changed); None without statistics."""
        if training_std is None or len(training_std) < self.restores.stop:
            return None
        constant = bool(np.all(np.asarray(training_std)[self.restores] < CONSTANT_STD))
        return constant == self.zero


CONSTANT_STD = 1e-3  # VecNormalize's std is sqrt(var + 1e-8): 1e-4 for a feature that never changed
_ANT_CONTACT_FORCES = slice(27, 111)
# Per current id, the options that restore an older version's layout, in order of preference. Measured on the
# RL Zoo's Ant-v3 agents: Ant-v3 (mujoco-py) returned 111 features, 84 of them contact forces (cfrc_ext);
# Ant-v4 returns 27 unless use_contact_forces=True (then the same 111), Ant-v5 drops the world body (105).
# mujoco-py 2.x returned those forces as zeros (the TRPO and PPO agents' VecNormalize statistics: variance 0),
# today's MuJoCo computes them: the TRPO agent scores about 5,200 with them held at zero and about 0 (it
# falls) with them as computed; the A2C agent's statistics show they varied in its training.
LAYOUT_OPTIONS: Mapping[str, tuple[LayoutOption, ...]] = {
    "Ant-v4": (
        LayoutOption({"use_contact_forces": True, "contact_force_range": [0.0, 0.0]},
                     "the 84 contact forces held at zero, as mujoco-py 2.x returned them", _ANT_CONTACT_FORCES, True),
        LayoutOption({"use_contact_forces": True}, "the 84 contact forces as MuJoCo computes them",
                     _ANT_CONTACT_FORCES, False),
    ),
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


def resolve_env(spec: EnvSpec, observation_space: SpaceSpec, action_space: SpaceSpec,
                training_std: np.ndarray | None = None) -> ResolvedEnv:
    """``spec`` when it can be made here; else the nearest other version that fits (see the module).

    ``training_std``: the per-feature standard deviations of the agent's VecNormalize statistics, when it has
    them: they choose between layout options that differ in what the restored features hold."""
    from edgekit.host.gym_envs import make_env

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
    return _other_version(spec, observation_space, action_space, problem, why, training_std)


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[:limit - 3].rstrip() + "..."


def _other_version(spec: EnvSpec, observation_space: SpaceSpec, action_space: SpaceSpec, problem: EdgekitError,
                   why: str, training_std: np.ndarray | None = None) -> ResolvedEnv:
    from edgekit.host.gym_envs import make_env

    candidates = _versions(spec.id)
    if not candidates:
        raise problem
    tried: list[str] = []
    failures: list[EdgekitError] = []  # candidates whose own code fails here: their fix is the one to give
    for candidate in candidates:
        found = _try(make_env, replace(spec, id=candidate), observation_space, action_space, failures)
        if found is True:
            chosen = replace(spec, id=candidate)
            return ResolvedEnv(chosen, (
                f"{spec.id} {why}: using {candidate}, whose spaces fit the model (versions can differ in "
                "dynamics or rewards: check the env's changelog)",
                *_bounds_note(make_env(chosen), chosen, observation_space)))
        tried.append(f"{candidate} {found}")
    wanted = f"the model's {_observed(observation_space)} -> {action_space.describe()}"
    for candidate in candidates:
        fitting = [(o, replace(spec, id=candidate, kwargs={**spec.kwargs, **o.options}))
                   for o in LAYOUT_OPTIONS.get(candidate, ())]
        fitting = [(o, s) for o, s in fitting if _try(make_env, s, observation_space, action_space) is True]
        if fitting:
            raise _layout_error(spec, why, tried, wanted, candidate, fitting, training_std)
    broken = [f for f in failures if isinstance(f, EnvironmentUnavailableError)]
    if broken and not any(t.split(" ", 1)[1].startswith("returns") for t in tried):
        # no version here could even be made: the env's packages are the problem, not the layout
        raise EnvironmentUnavailableError(f"{spec.id} {why}, and {'; '.join(tried)}", hint=broken[0].hint)
    raise EnvironmentLayoutError(
        f"{spec.id} {why}, and no version of it here returns {wanted}: {'; '.join(tried)}",
        hint=f"install what {spec.id} needs, or pass --env/--env-kwargs for an env that returns that layout")


def _layout_error(spec: EnvSpec, why: str, tried: list[str], wanted: str, candidate: str,
                  fitting: list[tuple[LayoutOption, EnvSpec]],
                  training_std: np.ndarray | None) -> EnvironmentLayoutError:
    """Stop, naming the option set that restores the layout; the training statistics choose among several."""
    verdicts = [option.fits_training(training_std) for option, _spec in fitting]
    index = verdicts.index(True) if True in verdicts else 0
    option, chosen = fitting[index]
    because = (": the agent's VecNormalize statistics show they " + ("never varied" if option.zero else "varied")
               + " in training") if verdicts[index] else ""
    others = "; ".join(f"with {json.dumps(o.options, sort_keys=True)}, {o.returns}" for o, _s in fitting
                       if o is not option)
    return EnvironmentLayoutError(
        f"{spec.id} {why}; {'; '.join(tried)}, not {wanted}; {candidate} with "
        f"{json.dumps(option.options, sort_keys=True)} returns the model's layout ({option.returns}{because})"
        + (f"; {others}" if others else ""),
        hint=f"pass {chosen.cli_arguments()} (the options may change rewards or dynamics too: check the env's "
             "documentation)",
        suggestion=chosen)


def _try(make_env: Any, spec: EnvSpec, observation_space: SpaceSpec, action_space: SpaceSpec,
         failures: list[EdgekitError] | None = None) -> bool | str:
    """True when ``spec`` makes an env that fits; else what it returns instead (or why it cannot be made,
    the error kept in ``failures``)."""
    from edgekit.host.gym_envs import env_fits, space_spec

    try:
        env = make_env(spec)
    except MissingDependencyError:
        return "cannot be made either"
    except EdgekitError as exc:
        if failures is not None:
            failures.append(exc)
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
    from edgekit.host.gym_envs import observation_bounds_note

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

    from edgekit.host.gym_envs import register_family

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
