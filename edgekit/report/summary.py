"""The terminal summary of a report: a few lines, then one ✓/✗ line per threshold."""

from __future__ import annotations

from typing import Any

from edgekit.core.metrics import describe

_MARK = {"pass": "✓", "fail": "✗", "n/a": "–", "undefined": "?"}


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What a user reads after ``edgekit report``; the files hold the rest."""
    lines = [_numeric(report["validation"], report["reference"]["actions"])]
    loop = report["closed_loop"]
    if loop["status"] == "ok":
        parts = [f"{name} {s['mean']:.1f} ± {s['std']:.1f}" for name in ("float", "int8", "random")
                 if (s := loop[name]) is not None]
        score = loop["normalized_score"]
        tail = f"; score {score:.3f}" if score is not None else ""
        lines.append(f"closed loop, {loop['episodes']} episodes of {loop['env_id']}: {', '.join(parts)}{tail}")
    else:
        lines.append(f"closed loop: skipped ({loop['note']})")
    layers = report["layers"]
    if layers["layers"]:
        worst = min(layers["layers"], key=lambda e: e["rank"])
        steps = worst["rmse_in_steps"] if worst["rmse_in_steps"] is not None else worst["accumulated_rmse_in_steps"]
        lines.append(f"layers: most lost at #{worst['position']} {worst['op']} (RMSE {steps:.2f} steps; "
                     f"0.29 = rounding only)")
    else:
        lines.append(f"layers: unavailable ({layers['note']})")
    simulated = (report.get("bundle") or {}).get("conditioning", {}).get("simulated_fidelity")
    if simulated:
        lines.append(f"int8 conditioning: simulated error {simulated}")
    cover = report["coverage"]
    if cover["flagged"]:
        lines.append(f"coverage: {len(cover['flagged'])} of {len(cover['features'])} features clip held-out values "
                     f"by more than one int8 step: {', '.join(cover['flagged'])}")
    else:
        lines.append(f"coverage: no feature of {len(cover['features'])} clips held-out values by more than a step")
    lines += [_check_line(c) for c in report["thresholds"]["checks"]]
    return lines


def _numeric(v: dict[str, Any], reference: str) -> str:
    against = "SB3 predict" if reference == "sb3_predict" else "policy.onnx"
    head = f"numeric error, {v['samples']} held-out observations vs {against}: "
    return head + describe(v, with_max=True)


def _check_line(c: dict[str, Any]) -> str:
    share = c["name"] != "min_score"
    value = "n/a" if c["value"] is None else (f"{c['value']:.2%}" if share else f"{c['value']:.3f}")
    limit = f"{c['threshold']:.2%}" if share else f"{c['threshold']:.3f}"
    kind = "enforced" if c["enforced"] else "advisory"
    note = f" ({c['note']})" if c["note"] and c["status"] != "pass" else ""
    name = c["name"].replace("_", " ")
    return f"{_MARK[c['status']]} {name}: {value} (needs {c['comparison']} {limit}, {kind}){note}"
