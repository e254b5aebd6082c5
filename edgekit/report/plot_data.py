"""The per-observation arrays a report's plots draw: built by ``build_report``, drawn by ``plots``/``html``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlotData:
    """Per-observation arrays the HTML plots draw (not stored in report.json)."""

    float_actions: np.ndarray
    int8_actions: np.ndarray
    float_outputs: np.ndarray
    int8_outputs: np.ndarray
