"""rl-zoo3's ``config.yml``: read it safely and refuse what edgekit cannot reproduce on the device.

The zoo writes its hyper-parameters as YAML tagged
``!!python/object/apply:collections.OrderedDict``. A safe loader that accepts
that one tag (and no other Python tag) reads it without running anything. An
``env_wrapper`` or ``frame_stack`` means the policy saw transformed observations
in training: the wrappers edgekit reproduces (``edgekit.env_wrappers``) become part
of the env spec; for any other the device would feed raw observations, so the
build refuses and names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.env_wrappers import WrapperSpec
from edgekit.errors import MissingDependencyError, ModelFileError, UnsupportedModelError

MAX_BYTES = 1024 * 1024
_ORDERED_DICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.OrderedDict"


def read_zoo_config(path: Path) -> dict[str, Any]:
    """The hyper-parameters as a plain dict; any Python tag but OrderedDict is refused."""
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} does not hold a mapping of hyper-parameters")
    return data


def read_env_kwargs(path: Path) -> dict[str, Any]:
    """``env_kwargs.yml``: the kwargs the agent's env was made with (empty file: none)."""
    from edgekit.env_spec import json_safe

    data = _load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict) or not json_safe(data):
        raise ModelFileError(f"{path} does not hold a mapping of plain env kwargs",
                             hint="pass --env-kwargs JSON to override it")
    return data


def _load_yaml(path: Path) -> Any:
    """The zoo's YAML with the safe loader plus its OrderedDict tag (built as a plain dict)."""
    try:
        import yaml
    except ImportError:
        raise MissingDependencyError("PyYAML is needed to read rl-zoo3's config.yml",
                                     hint="pip install 'edgekit[host]'") from None

    class ZooLoader(yaml.SafeLoader):
        """SafeLoader plus the zoo's OrderedDict tag, built as a plain dict."""

    def ordered_dict(loader: Any, node: Any) -> dict[str, Any]:
        pairs = loader.construct_sequence(node.value[0], deep=True) if node.value else []
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise yaml.constructor.ConstructorError(None, None, "malformed OrderedDict", node.start_mark)
        return {str(k): v for k, v in pairs}

    ZooLoader.add_constructor(_ORDERED_DICT_TAG, ordered_dict)
    if path.stat().st_size > MAX_BYTES:
        raise ModelFileError(f"{path} is too large for a zoo config")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=ZooLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a zoo file edgekit can read safely ({first})") from None
    return data


def check_zoo_config(config: dict[str, Any], path: Path) -> None:
    """Refuse observation transforms the device would not reproduce."""
    zoo_wrappers(config, path)
    value = config.get("frame_stack")
    if value not in (None, False, 0, "", [], {}):
        raise UnsupportedModelError(
            f"{path} says the agent was trained with frame_stack={value!r}; edgekit does not reproduce it on the "
            "device, so the policy would see different observations",
            hint="deploy an agent trained without it, or apply the transform yourself before calling the runtime",
        )


def zoo_wrappers(config: dict[str, Any], path: Path) -> tuple[WrapperSpec, ...]:
    """The ``env_wrapper`` the agent was trained in, when edgekit reproduces it (``edgekit.env_wrappers``);
    any other is refused by name."""
    from edgekit.env_wrappers import from_zoo_config

    try:
        return from_zoo_config(config.get("env_wrapper"))
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path}: {exc.message}", hint=exc.hint) from None
