"""The unit lane: numpy, one TFLite interpreter (the ``device`` extra) and pytest, nothing heavier.

``pytest tests/unit`` runs in a venv made with ``pip install -e '.[device,test]'`` in well under a minute. Its
tests run the device runtime on the small bundles committed under ``tests/data/unit-bundles/`` (made by
``scripts/make_unit_bundles.py``) and the light modules on their own. Every test here fails should it pull
in a host package (torch, Gymnasium, SB3, TensorFlow, ONNX), installed or not.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

UNIT_BUNDLES = Path(__file__).resolve().parents[1] / "data" / "unit-bundles"
BUNDLE_NAMES = ("ppo-pendulum", "ppo-cartpole")  # Box actions (unscaled) and Discrete (argmax of logits)
# The build host's packages: none of them may be imported by the unit lane (the device runtime's promise).
HEAVY_MODULES = ("torch", "gymnasium", "gym", "stable_baselines3", "sb3_contrib", "tensorflow", "keras", "tf_keras",
                 "onnx", "onnxruntime", "onnx2tf", "scipy", "pandas", "matplotlib", "yaml")


def heavy_modules_loaded() -> set[str]:
    """The heavy top-level packages in ``sys.modules`` now."""
    return {name for name in HEAVY_MODULES if name in sys.modules}


@pytest.fixture(autouse=True)
def _no_heavy_import() -> Iterator[None]:
    """Fail the test that made this process import a host package."""
    before = heavy_modules_loaded()
    yield
    gained = heavy_modules_loaded() - before
    assert not gained, f"a unit test imported {sorted(gained)}: the unit lane is numpy and an interpreter only"


@pytest.fixture(scope="session")
def bundle_dir() -> Callable[[str], Path]:
    """``bundle_dir(name)``: the committed bundle (read only: copy it before changing anything)."""

    def get(name: str) -> Path:
        path = UNIT_BUNDLES / name
        assert (path / "manifest.json").is_file(), f"{path} is missing: run scripts/make_unit_bundles.py"
        return path

    return get


@pytest.fixture
def bundle_copy(bundle_dir: Callable[[str], Path], tmp_path: Path) -> Callable[[str], Path]:
    """``bundle_copy(name)``: a copy of a committed bundle in this test's tmp_path, to tamper with."""

    def get(name: str) -> Path:
        return Path(shutil.copytree(bundle_dir(name), tmp_path / name))

    return get
