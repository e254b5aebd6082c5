"""Input coverage: do the held-out observations fit the int8 input the calibration chose?

Each observation feature is preprocessed and quantized to int8 with ranges
set by the calibration set. A held-out value beyond them is clipped to -128 or
127 (saturated): the int8 policy then sees a different state than the float
one. Features clipped by more than one input step are flagged (a value just
past the edge, as int8's asymmetric -128..127 makes the calibration extremes,
loses less than a step); the usual fix is calibrating on observations that
cover them.

One-hot (Discrete, MultiDiscrete) and MultiBinary features get their own
section (``discrete_inputs``): how often each class or bit was on in the
calibration and held-out sets, the classes the calibration never saw (their
effect on the hidden layers' int8 ranges was never measured), and the int8
levels 0 and 1 take (exact levels when conditioned, see ``stages/condition.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.bundle.image_spec import ImageInput
from edgekit.bundle.manifest import Preprocess
from edgekit.core.observations import ObservationEncoder
from edgekit.core.quant import INT8_MAX, INT8_MIN, LEVEL_TOLERANCE, QuantParams

FLAG_STEPS = 1.0  # flag a feature when some held-out value is clipped by more than this many input steps


def feature_names(shape: tuple[int, ...]) -> list[str]:
    """``obs[i]`` (or ``obs[i,j]`` for multi-dimensional observations), in flattening order."""
    if len(shape) <= 1:
        return [f"obs[{i}]" for i in range(int(np.prod(shape)) if shape else 1)]
    return [f"obs[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def unclipped_levels(obs: np.ndarray, preprocess: Preprocess, quant: QuantParams) -> np.ndarray:
    """The int8 level each value would take before saturation, as the runtime computes it: VecNormalize
    (with its clip, which SB3 applies too) first, then the per-feature scaling."""
    x = preprocess.normalize.apply(obs) if preprocess.normalize is not None else obs.astype(np.float64)
    scale = np.asarray(preprocess.scale, dtype=np.float64) * quant.scale
    return np.rint((x - np.asarray(preprocess.offset, dtype=np.float64)) / scale + quant.zero_point)


def _raw_units(values: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Values of the normalized input in the observation's own units (VecNormalize undone where applied)."""
    norm = preprocess.normalize
    if norm is None:
        return values
    raw = np.asarray(norm.mean) + np.asarray(norm.std) * values
    return raw if norm.active is None else np.where(np.asarray(norm.active), raw, values)


def input_coverage(calibration: np.ndarray, held_out: np.ndarray, preprocess: Preprocess, quant: QuantParams,
                   shape: tuple[int, ...], names: list[str] | None = None) -> dict[str, Any]:
    """The report section: per-feature ranges and saturation on the held-out observations (``names``:
    one per feature, default ``feature_names(shape)``)."""
    levels = unclipped_levels(held_out, preprocess, quant)
    saturated = (levels < INT8_MIN) | (levels > INT8_MAX)
    beyond = np.maximum(INT8_MIN - levels, levels - INT8_MAX).clip(min=0)  # levels lost to clipping
    cal_low, cal_high = calibration.min(axis=0), calibration.max(axis=0)
    offset, pre_scale = np.asarray(preprocess.offset), np.asarray(preprocess.scale)
    rep_low, rep_high = quant.representable
    int8_low, int8_high = (_raw_units(offset + pre_scale * rep, preprocess) for rep in (rep_low, rep_high))
    int8_step = _raw_units(offset + pre_scale * quant.scale, preprocess) - _raw_units(offset, preprocess)
    features = []
    for i, name in enumerate(names if names is not None else feature_names(shape)):
        column = held_out[:, i]
        outside = (column < cal_low[i]) | (column > cal_high[i])
        features.append({
            "index": i,
            "name": name,
            "calibration_range": [float(cal_low[i]), float(cal_high[i])],
            "held_out_range": [float(column.min()), float(column.max())],
            "int8_range": [float(int8_low[i]), float(int8_high[i])],
            "int8_step": float(int8_step[i]),
            "held_out_levels": [float(levels[:, i].min()), float(levels[:, i].max())],
            "outside_calibration_share": float(outside.mean()),
            "saturated_share": float(saturated[:, i].mean()),
            "max_clipped_steps": float(beyond[:, i].max()),
            "flagged": bool(beyond[:, i].max() > FLAG_STEPS),
        })
    flagged = [f["name"] for f in features if f["flagged"]]
    return {
        "samples": int(len(held_out)),
        "input_quantization": quant.to_dict(),
        "features": features,
        "flagged": flagged,
        "saturated_share": float(saturated.any(axis=1).mean()) if len(held_out) else 0.0,
    }


def image_coverage(calibration: np.ndarray, held_out: np.ndarray, image: ImageInput,
                   quant: QuantParams) -> dict[str, Any]:
    """The section for image observations: a summary per channel, not a row per pixel.

    A uint8 pixel maps onto the int8 input exactly (``q = x - 128``), so no held-out
    value can saturate; what is left to show is which pixel values each set reached.
    """
    def per_channel(obs: np.ndarray) -> np.ndarray:  # (C, N * H * W)
        hwc = image.nhwc(obs)
        return hwc.reshape(-1, hwc.shape[-1]).T

    cal, held = per_channel(calibration), per_channel(held_out)
    channels = [{
        "channel": c,
        "calibration_range": [float(cal[c].min()), float(cal[c].max())],
        "held_out_range": [float(held[c].min()), float(held[c].max())],
        "held_out_mean": float(held[c].mean()),
    } for c in range(len(cal))]
    return {
        "samples": int(len(held_out)),
        "input_quantization": quant.to_dict(),
        "features": [],
        "flagged": [],
        "saturated_share": 0.0,
        "image": {
            "layout": image.layout,
            "shape": list(image.shape),
            "divisor": image.divisor,
            "channels": channels,
            "note": f"uint8 pixels map onto the int8 input exactly (q = x - 128, x/{image.divisor:g} folded into "
                    "the input scale): no value saturates, so coverage is summarised per channel",
        },
    }


def discrete_inputs(calibration: np.ndarray, held_out: np.ndarray, encoder: ObservationEncoder,
                    preprocess: Preprocess, quant: QuantParams) -> dict[str, Any]:
    """The ``coverage.discrete_inputs`` section: one entry per one-hot branch or MultiBinary part."""
    names = encoder.feature_names()
    groups = []
    for name, kind, where in encoder.groups():
        index = list(range(where.start, where.stop))
        cal = (calibration[:, where] > 0.5).sum(axis=0)
        held = (held_out[:, where] > 0.5).sum(axis=0)
        levels = preprocess.binary_levels(index, quant)
        residuals = preprocess.binary_residuals(index, quant)
        groups.append({
            "name": name,
            "kind": kind,
            "features": [names[i] for i in index],
            "calibration_on": [int(v) for v in cal],
            "held_out_on": [int(v) for v in held],
            "unseen_in_calibration": [names[i] for i, c, h in zip(index, cal, held) if c == 0 and h > 0],
            "int8_levels": [[float(a), float(b)] for a, b in levels],
            "exact_levels": bool(np.all(residuals <= LEVEL_TOLERANCE)),
        })
    return {
        "groups": groups,
        "unseen_in_calibration": [f for g in groups for f in g["unseen_in_calibration"]],
        "exact_levels": all(g["exact_levels"] for g in groups),
    }
