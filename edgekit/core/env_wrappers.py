"""Observation wrappers of training that edgekit reproduces, so that the env returns what the policy saw.

rl-zoo3 wraps some envs before training (``config.yml``'s ``env_wrapper``), and
the policy's input is then the wrapper's observation, not the env's. A wrapper in
``REPRODUCED`` is applied by ``edgekit.host.gym_envs.make_env`` (``apply_wrappers``) wherever edgekit plays the
env (calibration rollouts, the report's closed loop, ``edgekit run``) and recorded
in the manifest (``env.wrappers``); its ``device`` text says what a robot must
feed the model in its place. Any other wrapper is refused by name
(``edgekit.host.loading.zoo_config``).

Light (standard library only): the manifest imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.core.errors import BundleError, UnsupportedModelError


@dataclass(frozen=True)
class Reproduced:
    """A wrapper edgekit applies as training did: the class that implements it and what it adds."""

    module: str
    name: str
    package: str  # pip requirement that provides the class
    kwargs: Mapping[str, type]  # the constructor options accepted (from config.yml) and their types
    device: str  # what the device must compute in its place


REPRODUCED: Mapping[str, Reproduced] = {
    "TimeFeatureWrapper": Reproduced(
        module="sb3_contrib.common.wrappers", name="TimeFeatureWrapper", package="edgekit-sb3[contrib]",
        kwargs={"max_steps": int, "test_mode": bool},
        device="the observation's last feature (of the 'observation' key for a Dict) is the remaining time of the "
               "episode, 1 - t / max_steps (1.0 at reset), which the device appends as sb3-contrib's "
               "TimeFeatureWrapper does"),
}
# How rl-zoo3 configs name them.
_ALIASES = {
    "sb3_contrib.common.wrappers.TimeFeatureWrapper": "TimeFeatureWrapper",
    "sb3_contrib.common.wrappers.time_feature.TimeFeatureWrapper": "TimeFeatureWrapper",
    "TimeFeatureWrapper": "TimeFeatureWrapper",
}


@dataclass(frozen=True)
class WrapperSpec:
    """One reproduced wrapper and its constructor options."""

    name: str
    kwargs: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: Any) -> WrapperSpec:
        """The manifest form; an unknown wrapper or option is a BundleError (nothing is imported by name)."""
        if not isinstance(data, dict) or data.get("name") not in REPRODUCED or not isinstance(data.get("kwargs", {}),
                                                                                                dict):
            raise BundleError(f"manifest: env.wrappers entries must name one of {sorted(REPRODUCED)}")
        try:
            return checked(data["name"], data.get("kwargs", {}))
        except UnsupportedModelError as exc:
            raise BundleError(f"manifest: env.wrappers: {exc.message}") from None


def checked(name: str, kwargs: Any) -> WrapperSpec:
    """A wrapper named by a config, if edgekit reproduces it and its options are the plain ones it takes."""
    short = _ALIASES.get(name)
    if short is None:
        raise UnsupportedModelError(
            f"the agent was trained with env_wrapper {name!r}, which edgekit does not reproduce (it reproduces "
            f"{', '.join(sorted(REPRODUCED))}), so the policy would see different observations",
            hint="deploy an agent trained without it, or pass --env with an env that returns the wrapped "
                 "observations")
    known = REPRODUCED[short]
    options = kwargs if isinstance(kwargs, dict) else None
    if options is None or any(k not in known.kwargs or type(v) is not known.kwargs[k] for k, v in options.items()):
        raise UnsupportedModelError(f"env_wrapper {name} with options {kwargs!r}: edgekit reproduces it with "
                                    f"{', '.join(f'{k} ({t.__name__})' for k, t in known.kwargs.items())} only")
    return WrapperSpec(short, dict(options))


def from_zoo_config(value: Any) -> tuple[WrapperSpec, ...]:
    """``config.yml``'s ``env_wrapper``: a name, ``{name: kwargs}``, or a list of those (rl-zoo3's forms)."""
    if value in (None, False, "", [], {}):
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(checked(item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            (name, kwargs), = item.items()
            out.append(checked(str(name), kwargs if kwargs is not None else {}))
        else:
            raise UnsupportedModelError(f"env_wrapper {item!r} is not a wrapper name or {{name: options}}")
    return tuple(out)


def device_notes(wrappers: tuple[WrapperSpec, ...]) -> list[str]:
    """What the device must compute for each wrapper (for the build's notes and the docs)."""
    return [f"{w.name}: {REPRODUCED[w.name].device}" for w in wrappers]
