"""The unit lane's promise: numpy, a TFLite interpreter and pytest, nothing heavier.

Each unit test fails should it import a host package (tests/unit/conftest.py); this checks what collection
imported (the root conftest, these modules and the edgekit modules they name) when the lane runs alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import HEAVY_MODULES, heavy_modules_loaded

UNIT = Path(__file__).resolve().parent


def test_collecting_and_running_the_unit_lane_imported_nothing_heavy(request):
    if any(UNIT not in Path(item.path).resolve().parents for item in request.session.items):
        pytest.skip("the whole suite is running: host packages are loaded by the other tests")
    loaded = heavy_modules_loaded()
    assert not loaded, f"the unit lane imported {sorted(loaded)}"
    assert "numpy" in sys.modules and any(m in sys.modules for m in ("ai_edge_litert", "tflite_runtime"))
    assert {"torch", "gymnasium", "tensorflow"} <= set(HEAVY_MODULES)
