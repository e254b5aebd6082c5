"""Numeric fidelity metrics: int8 policy vs float policy on the same observations.

Pure numpy, so the same code scores a build, a report and an on-device check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.core.postprocess import branches
from edgekit.core.spaces import DISCRETE, MULTI_BINARY, MULTI_DISCRETE, SpaceSpec

# A decision is decisive when the float policy's best two outputs (of its branch) differ by at
# least this share of the outputs' robust spread (1st..99th percentile); a Bernoulli decision's
# gap is |logit| (the logits of 0 and 1 are 0 and the logit).
DECISIVE_SHARE = 0.01
DISCRETE_KINDS = (DISCRETE, MULTI_DISCRETE, MULTI_BINARY)


def fidelity_metrics(float_out: np.ndarray, int8_out: np.ndarray, float_actions: np.ndarray,
                     int8_actions: np.ndarray, action_space: SpaceSpec, output_step: float,
                     policy_out: np.ndarray | None = None) -> dict[str, Any]:
    """Compare raw outputs (B, K) of the float and int8 models, and the actions (B, ...) of
    the float policy as SB3 computes them and of the int8 policy as the runtime does.

    ``policy_out``: the policy's own raw outputs (Q-values, logits) before edgekit's conditioning
    rewrote them (centred, clamped); decisive states are judged on these when given, so that the
    definition does not move with the conditioning."""
    raw_err = np.abs(int8_out - float_out)
    metrics: dict[str, Any] = {
        "samples": int(len(float_out)),
        "raw_output": {
            "mean_abs_error": float(raw_err.mean()),
            "p99_abs_error": float(np.percentile(raw_err, 99)),
            "max_abs_error": float(raw_err.max()),
            "quantization_step": float(output_step),
            "max_error_in_steps": float(raw_err.max() / output_step),
            "float_range": [float(float_out.min()), float(float_out.max())],
        },
    }
    decided_on = float_out if policy_out is None else policy_out  # the policy's own outputs (see _discrete)
    if action_space.kind == DISCRETE:
        metrics["discrete"] = _discrete(decided_on, float_actions, int8_actions)
    elif action_space.kind in DISCRETE_KINDS:
        metrics["discrete"] = _multi_discrete(decided_on, float_actions, int8_actions, action_space)
    else:
        metrics["continuous"] = _continuous(float_actions, int8_actions, action_space)
    return metrics


def _continuous(float_act: np.ndarray, int8_act: np.ndarray, space: SpaceSpec) -> dict[str, Any]:
    err = np.abs(int8_act - float_act).reshape(len(float_act), -1)
    span = (space.high_array() - space.low_array()).reshape(-1).astype(np.float64)
    span = np.where(np.isfinite(span) & (span > 0), span, np.nan)
    share = err / span
    per_dim = [
        {
            "mean_abs_error": float(err[:, d].mean()),
            "p99_abs_error": float(np.percentile(err[:, d], 99)),
            "max_abs_error": float(err[:, d].max()),
            "mean_share_of_range": _nan_to_none(share[:, d].mean()),
            "p99_share_of_range": _nan_to_none(np.percentile(share[:, d], 99)),
            "max_share_of_range": _nan_to_none(share[:, d].max()),
        }
        for d in range(err.shape[1])
    ]
    return {
        "per_dimension": per_dim,
        "mean_share_of_range": _nan_to_none(np.nanmean(share)) if np.isfinite(share).any() else None,
        "p99_share_of_range": _nan_to_none(np.nanpercentile(share, 99)) if np.isfinite(share).any() else None,
        "max_share_of_range": _nan_to_none(np.nanmax(share)) if np.isfinite(share).any() else None,
    }


def _discrete(float_out: np.ndarray, float_actions: np.ndarray, int8_actions: np.ndarray) -> dict[str, Any]:
    agree = np.asarray(float_actions).reshape(-1) == np.asarray(int8_actions).reshape(-1)
    gap = _best_gap(float_out)
    decisive = decisive_mask(float_out)
    out: dict[str, Any] = {
        "agreement": float(agree.mean()),
        "decisive_share": float(decisive.mean()),
        "decisive_agreement": float(agree[decisive].mean()) if decisive.any() else None,
        "disagreements": int((~agree).sum()),
        "float_gap_median": float(np.median(gap)),
    }
    if (~agree).any():
        out["disagreement_float_gap"] = _gap_summary(gap[~agree])
    return out


def _multi_discrete(float_out: np.ndarray, float_actions: np.ndarray, int8_actions: np.ndarray,
                    space: SpaceSpec) -> dict[str, Any]:
    """MultiDiscrete (one argmax per branch) and MultiBinary (one sign per output): every figure of
    ``_discrete`` pooled over all (state, branch) decisions, plus whole-action agreement and each branch."""
    rows = len(float_out)
    agree = np.asarray(float_actions).reshape(rows, -1) == np.asarray(int8_actions).reshape(rows, -1)
    bernoulli = space.kind == MULTI_BINARY
    gaps, decisive = [], []
    for lo, hi in branches(space):
        block = float_out[:, lo:hi]
        if bernoulli:
            gap = np.abs(block[:, 0])
        elif hi - lo > 1:
            ordered = np.sort(block, axis=1)
            gap = ordered[:, -1] - ordered[:, -2]
        else:
            gap = np.full(rows, np.inf)
        spread = float(np.percentile(block, 99) - np.percentile(block, 1))
        gaps.append(gap)
        decisive.append(gap >= DECISIVE_SHARE * spread)
    gap_all, decisive_all = np.stack(gaps, axis=1), np.stack(decisive, axis=1)
    name = "bit" if bernoulli else "branch"
    per_branch = [{
        "name": f"{name} {k}",
        "agreement": float(agree[:, k].mean()),
        "decisive_share": float(decisive_all[:, k].mean()),
        "decisive_agreement": float(agree[decisive_all[:, k], k].mean()) if decisive_all[:, k].any() else None,
        "disagreements": int((~agree[:, k]).sum()),
    } for k in range(agree.shape[1])]
    out: dict[str, Any] = {
        "agreement": float(agree.mean()),
        "decisive_share": float(decisive_all.mean()),
        "decisive_agreement": float(agree[decisive_all].mean()) if decisive_all.any() else None,
        "disagreements": int((~agree).sum()),
        "float_gap_median": float(np.median(gap_all[np.isfinite(gap_all)])) if np.isfinite(gap_all).any() else 0.0,
        "action_agreement": float(agree.all(axis=1).mean()),
        "decision": "sign of each logit (MultiBinary)" if bernoulli else "argmax of each branch (MultiDiscrete)",
        "branches": per_branch,
    }
    if (~agree).any():
        out["disagreement_float_gap"] = _gap_summary(gap_all[~agree])
    return out


def _best_gap(outputs: np.ndarray) -> np.ndarray:
    ordered = np.sort(outputs, axis=1)
    return ordered[:, -1] - ordered[:, -2] if outputs.shape[1] > 1 else np.full(len(outputs), np.inf)


def decisive_mask(outputs: np.ndarray) -> np.ndarray:
    """States whose best two outputs (B, K) differ by at least ``DECISIVE_SHARE`` of the outputs' robust
    spread (1st to 99th percentile over all of them): where the policy's choice is not a near tie."""
    outputs = np.asarray(outputs, dtype=np.float64)
    spread = float(np.percentile(outputs, 99) - np.percentile(outputs, 1))
    return _best_gap(outputs) >= DECISIVE_SHARE * spread


def _nan_to_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def describe(metrics: dict[str, Any], with_max: bool = False) -> str:
    """The headline of a ``fidelity_metrics`` result, for terminals and summaries."""
    if "discrete" in metrics:
        d = metrics["discrete"]
        decisive = d["decisive_agreement"]
        if "branches" in d:  # one decision per branch (MultiDiscrete) or bit (MultiBinary)
            tail = f", {decisive:.2%} on decisive ones" if decisive is not None else ""
            return (f"agreement {d['agreement']:.2%} of the {len(d['branches'])} decisions per action{tail}; "
                    f"whole actions {d['action_agreement']:.2%}")
        tail = f", {decisive:.2%} on decisive states" if decisive is not None else ""
        return f"argmax agreement {d['agreement']:.2%}{tail}"
    c = metrics["continuous"]
    if c["mean_share_of_range"] is None:
        return f"max raw error {metrics['raw_output']['max_abs_error']:.3g}"
    worst = f", max {c['max_share_of_range']:.2%}" if with_max else ""
    return f"action error mean {c['mean_share_of_range']:.2%}, p99 {c['p99_share_of_range']:.2%}{worst} of the range"


def _gap_summary(margins: np.ndarray) -> dict[str, float]:
    """How close the float policy was to deciding otherwise where int8 decided otherwise."""
    return {"median": float(np.median(margins)), "p90": float(np.percentile(margins, 90)),
            "max": float(margins.max())}
