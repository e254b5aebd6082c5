"""rl-zoo3's ``config.yml``: read it safely and refuse what edgekit cannot reproduce on the device.

The zoo writes its hyper-parameters as YAML tagged
``!!python/object/apply:collections.OrderedDict``. A safe loader that accepts
that one tag (and no other Python tag) reads it without running anything. An
``env_wrapper`` or ``frame_stack`` means the policy saw transformed observations
in training: the wrappers edgekit reproduces (``edgekit.core.env_wrappers``) become part
of the env spec; for any other the device would feed raw observations, so the
build refuses and names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.core.env_wrappers import WrapperSpec
from edgekit.core.errors import MissingDependencyError, ModelFileError, UnsupportedModelError

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000  # values a document may expand to through its aliases (zoo configs hold a few hundred)
MAX_NESTING = 64  # levels of nested values (zoo configs use 3)
_ORDERED_DICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.OrderedDict"


def read_zoo_config(path: Path) -> dict[str, Any]:
    """The hyper-parameters as a plain dict; any Python tag but OrderedDict is refused."""
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} does not hold a mapping of hyper-parameters")
    return data


def read_env_kwargs(path: Path) -> dict[str, Any]:
    """``env_kwargs.yml``: the kwargs the agent's env was made with (empty file: none)."""
    from edgekit.core.env_spec import json_safe

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
                                     hint="pip install 'edgekit-sb3[host]'") from None

    class ZooLoader(yaml.SafeLoader):
        """SafeLoader plus the zoo's OrderedDict tag, built as a plain dict, and nesting bounded: PyYAML
        composes nested values recursively, so a deep one would take seconds to fail."""

        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            try:
                if self.depth > MAX_NESTING:
                    raise yaml.composer.ComposerError(None, None, f"values nested deeper than {MAX_NESTING} levels",
                                                      self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    def ordered_dict(loader: Any, node: Any) -> dict[str, Any]:
        pairs = loader.construct_sequence(node.value[0], deep=True) if node.value else []
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise yaml.constructor.ConstructorError(None, None, "malformed OrderedDict", node.start_mark)
        return {str(k): v for k, v in pairs}

    ZooLoader.add_constructor(_ORDERED_DICT_TAG, ordered_dict)
    if path.stat().st_size > MAX_BYTES:
        raise ModelFileError(f"{path} is too large for a zoo config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(f"{path} is not UTF-8 text, as a zoo file is") from None
    loader = ZooLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, path)
        return loader.construct_document(node) if node is not None else None
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a zoo file edgekit can read safely ({first})") from None
    finally:
        loader.dispose()


def _check_expansion(root: Any, path: Path) -> None:
    """Refuse a document whose aliases expand past ``MAX_NODES`` nodes, or into themselves.

    An alias is a reference: PyYAML composes ``[*a, *a, ...]`` in a few bytes, but
    every reader after it (the constructor's merge keys, the checks of plain
    values, JSON for the manifest) walks each reference again, so 597 bytes of
    nested aliases are 20**7 nodes to walk. This counts the nodes as they would
    be walked, each shared node once per reference, without walking them.
    """
    expanded: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded
    ancestors: set[int] = set()
    pending: list[tuple[Any, bool]] = [(root, False)]
    while pending:
        node, finished = pending.pop()
        key = id(node)
        children = _children(node)
        if finished:
            ancestors.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in children)
            if expanded[key] > MAX_NODES:
                raise ModelFileError(f"{path} expands to more than {MAX_NODES:,} values through its aliases "
                                     "(a YAML alias bomb?)", hint="write the values out without nested aliases")
            continue
        if key in expanded:
            continue
        if key in ancestors:
            raise ModelFileError(f"{path} holds an alias to a value that contains it (a recursive structure)",
                                 hint="write the values out without recursive aliases")
        ancestors.add(key)
        pending.append((node, True))
        pending.extend((child, False) for child in children if id(child) not in expanded)


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
    """The ``env_wrapper`` the agent was trained in, when edgekit reproduces it (``edgekit.core.env_wrappers``);
    any other is refused by name."""
    from edgekit.core.env_wrappers import from_zoo_config

    try:
        return from_zoo_config(config.get("env_wrapper"))
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path}: {exc.message}", hint=exc.hint) from None
