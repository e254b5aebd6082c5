"""Which environment a policy is calibrated and played in: a registered id or a class, plus kwargs.

Users train on more than gymnasium's built-in ids: an env class of their own
(``--env my_package.module:EnvClass``), an id registered when a module is
imported (``--env MyEnv-v0 --env-module my_package``, or gymnasium's own
``my_package:MyEnv-v0`` form), with constructor kwargs (``--env-kwargs`` JSON,
or the ``env_kwargs.yml`` rl-zoo3 saves beside an agent). ``EnvSpec`` records
all of it in the manifest so a bundle says exactly what it was calibrated in.

Light (no gymnasium): the manifest imports it. Making the env is
``edgekit.host.gym_envs.make_env``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from edgekit.core.env_wrappers import WrapperSpec
from edgekit.core.errors import BundleError, UsageError

MAX_KWARGS_JSON = 64 * 1024
MAX_WRAPPERS = 8
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class EnvSpec:
    """``id``: a registered Gymnasium id, ``module:Id`` or ``module:Class``; ``module``: imported first;
    ``wrappers``: the training's observation wrappers that edgekit reproduces (``edgekit.core.env_wrappers``)."""

    id: str
    module: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: tuple[WrapperSpec, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip() or len(self.id) > 256:
            raise UsageError("the environment id must be a non-empty string", hint="e.g. --env Pendulum-v1")
        if self.module is not None and not _MODULE.match(self.module):
            raise UsageError(f"--env-module {self.module!r} is not a Python module name",
                             hint="e.g. --env-module my_package.envs")
        if ":" in self.id and not _MODULE.match(self.id.split(":", 1)[0]):
            raise UsageError(f"--env {self.id!r}: the part before ':' must be a Python module name",
                             hint="e.g. --env my_package.module:EnvClass")

    @property
    def imports_code(self) -> bool:
        """Making this env imports a module named here (not only gymnasium's registry)."""
        return self.module is not None or ":" in self.id

    def describe(self) -> str:
        """Short human form: the id, the module and kwargs when there are any."""
        extra = []
        if self.module:
            extra.append(f"module {self.module}")
        if self.kwargs:
            extra.append(f"kwargs {json.dumps(self.kwargs, sort_keys=True)}")
        extra += [f"in {w.name}" + (f" {json.dumps(dict(w.kwargs), sort_keys=True)}" if w.kwargs else "")
                  for w in self.wrappers]
        return self.id + (f" ({', '.join(extra)})" if extra else "")

    def cli_arguments(self) -> str:
        """The command-line options that name this env (for messages that tell the user what to pass)."""
        parts = [f"--env {self.id}"]
        if self.module:
            parts.append(f"--env-module {self.module}")
        if self.kwargs:
            parts.append(f"--env-kwargs '{json.dumps(self.kwargs, sort_keys=True)}'")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "module": self.module, "kwargs": self.kwargs}
        if self.wrappers:  # only then: bundles without wrappers keep the manifest form older readers know
            out["wrappers"] = [w.to_dict() for w in self.wrappers]
        return out

    @classmethod
    def from_dict(cls, data: Any, fallback_id: str) -> EnvSpec:
        """The manifest form; bundles written before it existed give only ``env_id`` (``fallback_id``)."""
        if data is None:
            return cls(fallback_id)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise BundleError("manifest: env must be an object with a string id")
        module, kwargs = data.get("module"), data.get("kwargs", {})
        if module is not None and (not isinstance(module, str) or not _MODULE.match(module)):
            raise BundleError("manifest: env.module must be a Python module name or null")
        if not isinstance(kwargs, dict) or not json_safe(kwargs) or len(json.dumps(kwargs)) > MAX_KWARGS_JSON:
            raise BundleError("manifest: env.kwargs must be a small JSON object")
        raw_wrappers = data.get("wrappers", [])
        if not isinstance(raw_wrappers, list) or len(raw_wrappers) > MAX_WRAPPERS:
            raise BundleError(f"manifest: env.wrappers must be a list of at most {MAX_WRAPPERS} wrappers")
        wrappers = tuple(WrapperSpec.from_dict(w) for w in raw_wrappers)
        try:
            return cls(data["id"], module, kwargs, wrappers)
        except UsageError as exc:
            raise BundleError(f"manifest: env: {exc}") from None


@dataclass(frozen=True)
class EnvOverride:
    """What a command line says of the env to play a bundle in; None fields keep the bundle's own."""

    env_id: str | None = None
    module: str | None = None
    kwargs: dict[str, Any] | None = None

    def apply(self, bundle_env: EnvSpec) -> EnvSpec:
        """The env to make. A bundle's env that needs a module imported (``module:Class``,
        ``--env-module``) is made only when the user names it: importing a module named in a file
        runs code, and a bundle may come from anyone."""
        wrappers = bundle_env.wrappers  # part of what the policy reads, whichever env plays it
        if self.env_id:
            return EnvSpec(self.env_id, self.module, self.kwargs if self.kwargs is not None else {}, wrappers)
        kwargs = self.kwargs if self.kwargs is not None else bundle_env.kwargs
        if self.module is not None:
            return EnvSpec(bundle_env.id, self.module, kwargs, wrappers)
        if bundle_env.imports_code:
            raise UsageError(f"the bundle's env {bundle_env.describe()} needs a Python module imported, which "
                             "edgekit does not do on a bundle's word", hint=f"pass it: {bundle_env.cli_arguments()}")
        return EnvSpec(bundle_env.id, None, kwargs, wrappers)


def parse_env_kwargs(text: str | None) -> dict[str, Any] | None:
    """``--env-kwargs`` JSON: an object of constructor keyword arguments (None: the option was not given)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--env-kwargs is not valid JSON ({exc.msg} at character {exc.pos})",
                         hint="""e.g. --env-kwargs '{"g": 9.81}'""") from None
    if not isinstance(value, dict):
        raise UsageError("--env-kwargs must be a JSON object", hint="""e.g. --env-kwargs '{"g": 9.81}'""")
    return value


def json_safe(value: Any, depth: int = 0) -> bool:
    """Plain JSON data, a few levels deep, finite numbers only."""
    if depth > 8:
        return False
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(json_safe(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_safe(v, depth + 1) for k, v in value.items())
    return False
