"""The report's figures as inline SVG: what a reader should see at a glance, drawn from the
report dict and the per-observation arrays (``PlotData``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.report.plot_data import PlotData
from edgekit.report.svg import BAD, FLOAT, INT8, RANDOM, Chart, fmt, hbars, nice_ticks, padded, ranges, thin

MAX_PANELS = 6  # scatter panels (action dimensions or discrete outputs)
MAX_POINTS = 1500  # points per scatter panel
MAX_ROWS = 40  # features in the coverage chart
ACCUMULATED = "#7b4fa0"


def action_scatters(report: dict[str, Any], data: PlotData) -> list[str]:
    """Float vs int8 per action dimension (Box) or per raw output (Discrete), with the y = x line."""
    discrete = "discrete" in report["validation"]
    if discrete:
        xs, ys = data.float_outputs, data.int8_outputs
        kind = report["bundle"]["output"].rstrip("s").replace("_", "-").replace("multi-", "").replace("bernoulli-", "")
        names = [f"{kind} {k}" for k in range(xs.shape[1])]
        rows = len(xs)  # a state is wrong when any branch (MultiDiscrete) or bit (MultiBinary) differs
        wrong = (np.asarray(data.float_actions).reshape(rows, -1) != np.asarray(data.int8_actions).reshape(rows, -1)
                 ).any(axis=1)
    else:
        xs, ys = data.float_actions.astype(np.float64), data.int8_actions.astype(np.float64)
        names = [f"action[{d}]" for d in range(xs.shape[1])]
        wrong = np.zeros(len(xs), dtype=bool)
    keep = thin(len(xs), MAX_POINTS)
    panels = []
    for k, name in enumerate(names[:MAX_PANELS]):
        x, y = xs[keep, k], ys[keep, k]
        low, high = padded(float(min(x.min(), y.min())), float(max(x.max(), y.max())))
        chart = Chart(f"{name}: float vs int8", (low, high), (low, high), "float", "int8", width=350)
        chart.line([low, high], [low, high], "#555555", dash="3 3")
        bad = wrong[keep]
        chart.points(x[~bad], y[~bad], INT8)
        if bad.any():
            chart.points(x[bad], y[bad], BAD, radius=3.0, opacity=0.9)
            chart.legend("argmax differs", BAD)
        panels.append(chart.svg())
    return panels


def error_histogram(report: dict[str, Any], data: PlotData) -> str:
    """Continuous: |action error| as % of the range. Discrete: raw output error in output steps."""
    if "continuous" in report["validation"]:
        space = report["bundle"]["action_space"]
        span = np.asarray(space["high"], dtype=np.float64) - np.asarray(space["low"], dtype=np.float64)
        err = np.abs(data.int8_actions.astype(np.float64) - data.float_actions)
        finite = np.isfinite(span) & (span > 0)
        values = (100 * err[:, finite] / span[finite]).reshape(-1) if finite.any() else err.reshape(-1)
        label = "|int8 - float| action, % of the range" if finite.any() else "|int8 - float| action"
    else:
        step = report["validation"]["raw_output"]["quantization_step"]
        values = ((data.int8_outputs - data.float_outputs) / step).reshape(-1)
        label = "int8 - float raw output, in output quantization steps"
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1e-6
    counts, edges = np.histogram(values, bins=30, range=(low, high))
    chart = Chart("error histogram", padded(low, high, 0.02), (0.0, float(counts.max()) * 1.08), label,
                  "count", width=420)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            chart.column(float(a), float(b), 0.0, float(c), INT8)
    return chart.svg()


def returns_plot(loop: dict[str, Any]) -> str | None:
    """Episode returns of float, int8 and random over the same seeds, with dashed means."""
    if loop["status"] != "ok":
        return None
    n = loop["episodes"]
    series = [(name, color, loop[name]) for name, color in (("float", FLOAT), ("int8", INT8), ("random", RANDOM))
              if loop[name] is not None]
    values = [r for _, _, s in series for r in s["returns"]]
    low, high = padded(min(values), max(values), 0.08)
    ticks = list(range(n)) if n <= 12 else [t for t in nice_ticks(0, n - 1) if float(t).is_integer()]
    chart = Chart(f"episode returns ({loop['env_id']})", (-0.6, n - 0.4), (low, high), "episode (seed = seed + i)",
                  "return", width=560, x_ticks=ticks)
    for offset, (name, color, s) in zip((-0.15, 0.0, 0.15), series):
        chart.points([i + offset for i in range(n)], s["returns"], color, radius=4, opacity=0.9)
        chart.line([-0.6, n - 0.4], [s["mean"], s["mean"]], color, dash="5 4")
        chart.legend(f"{name} {fmt(s['mean'])}", color)
    return chart.svg()


def layer_bars(section: dict[str, Any]) -> str | None:
    """Local and accumulated RMSE per layer, in each tensor's own quantization steps."""
    entries = section["layers"]
    if not entries:
        return None
    labels = [layer_label(e) for e in entries]
    return hbars("per-layer error (RMSE in quantization steps)", labels, [
        ("local (this layer alone)", INT8, [e["rmse_in_steps"] for e in entries]),
        ("accumulated (from the float input)", ACCUMULATED, [e["accumulated_rmse_in_steps"] for e in entries]),
    ], "RMSE / quantization step", reference=(section["rounding_only_rmse_in_steps"], "rounding only (0.29)"))


def layer_label(entry: dict[str, Any]) -> str:
    ops = [op for op in entry["float_ops"] if op not in ("Flatten", "Reshape", "Identity")]
    return f"#{entry['position']} {entry['op']}" + (f" ({'+'.join(ops)})" if ops else "")


def coverage_ranges(section: dict[str, Any]) -> str:
    """Calibration and held-out ranges per feature in int8 input levels, against -128 .. 127."""
    features = sorted(section["features"], key=lambda f: not f["flagged"])[:MAX_ROWS]
    features.sort(key=lambda f: f["index"])

    def levels(f: dict[str, Any], pair: list[float]) -> tuple[float, float]:
        low = f["int8_range"][0]
        return (-128 + (pair[0] - low) / f["int8_step"], -128 + (pair[1] - low) / f["int8_step"])

    return ranges("input coverage (int8 input levels)", [f["name"] for f in features], [
        ("calibration", FLOAT, [levels(f, f["calibration_range"]) for f in features]),
        ("held-out", INT8, [tuple(f["held_out_levels"]) for f in features]),
    ], (-128.0, 127.0), "int8 input level", [f["flagged"] for f in features])
