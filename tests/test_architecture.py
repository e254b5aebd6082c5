"""The package layers of docs/architecture.md, enforced on the source: imports run one way, no cycles.

Read from the source with ``ast`` (nothing is imported), every import counted, the
ones inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgekit"

# Lower ranks never import higher ones; packages of the same rank never import each other.
RANKS = {
    "edgekit": 0,  # edgekit/__init__.py: the version only
    "core": 1,  # numpy and the standard library: shared by the build host and the device
    "bundle": 2,  # the bundle's layout, manifest and files
    "runtime": 3,  # the device: numpy and one TFLite interpreter
    "device": 3,  # the Raspberry Pi kit: pair table, doctor's facts
    "host": 4,  # SB3, torch, gymnasium: algorithms, policies, envs, safe loading
    "stages": 5,  # the build's stages, one module each
    "edgetpu": 5,  # the Edge TPU check and compiler
    "report": 6,  # the quantization-error report of a built bundle
    "pipeline": 7,  # the build: stages in order
    "commands": 8,  # the CLI's subcommands
    "cli": 9,
    "__main__": 10,
}
# What the device-shared layers may import besides edgekit and the standard library.
LIGHT_THIRD_PARTY = {"core": {"numpy"}, "bundle": {"numpy"}}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of every module ``name`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return found


GRAPH = {name: {dep for dep in _imports(name, path) if dep in MODULES and dep != name}
         for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgekit"


def test_every_module_has_a_layer():
    assert {_layer(m) for m in MODULES} <= set(RANKS), set(_layer(m) for m in MODULES) - set(RANKS)


def test_imports_run_down_the_layers():
    wrong = []
    for module, deps in GRAPH.items():
        own = _layer(module)
        for dep in deps:
            other = _layer(dep)
            if other != own and not RANKS[other] < RANKS[own]:
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    """Tarjan's strongly connected components over modules: every one a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("layer", sorted(LIGHT_THIRD_PARTY))
def test_device_shared_layers_import_numpy_and_the_standard_library_only(layer):
    allowed = LIGHT_THIRD_PARTY[layer] | set(sys.stdlib_module_names) | {"edgekit"}
    heavy = {f"{module} imports {dep}" for module, path in MODULES.items() if _layer(module) == layer
             for dep in _imports(module, path) if dep.split(".")[0] not in allowed}
    assert not heavy, sorted(heavy)


def test_the_checker_sees_a_violation(tmp_path):
    """The rules bite: a core module importing a host one is reported."""
    sample = tmp_path / "bad.py"
    sample.write_text("def f():\n    from edgekit.host.gym_envs import make_env\n")
    assert "edgekit.host.gym_envs" in _imports("edgekit.core.bad", sample)
    assert RANKS[_layer("edgekit.host.gym_envs")] > RANKS[_layer("edgekit.core.bad")]
