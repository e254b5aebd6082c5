"""``report.html``: one self-contained page (inline CSS and SVG, no script, nothing fetched), so it can
be archived as a CI artifact or mailed and still open anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from edgekit.report import plots
from edgekit.report.plot_data import PlotData
from edgekit.report.svg import fmt

Cell = Any  # str | float | int | None | tuple[str, css class]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0;background:#f6f6f4}
main{max-width:1220px;margin:0 auto;padding:18px 26px 40px;background:#fff}
h1{font-size:22px;margin:6px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.meta{color:#555;margin:2px 0;font-size:13px}p.note{color:#555;font-size:13px;margin:6px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #d8d8d8;padding:3px 8px;text-align:right}th{background:#f0f0ee}td:not(.l){white-space:nowrap}
td.l,th.l{text-align:left}.pass{color:#18794e;font-weight:600}.fail{color:#c62828;font-weight:600}
.na{color:#888}.flag{color:#c62828;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}.plots svg{background:#fff;border:1px solid #eee}
code{font-size:12px}details{font-size:13px}h3{font-size:14px;margin:14px 0 6px}
"""
_MARK = {"pass": ("✓", "pass"), "fail": ("✗", "fail"), "n/a": ("–", "na"), "undefined": ("?", "fail")}


GENERATOR_META = '<meta name="generator" content="edgekit">'  # marks a page `edgekit report` may replace


def render(report: dict[str, Any], data: PlotData) -> str:
    """The whole page."""
    b = report["bundle"]
    title = f"Quantization report: {b['algorithm']} {b['env_id']}"
    body = "".join((_header(report, title), _checks(report), _numeric(report, data), _closed_loop(report),
                    _layers(report), _coverage(report), _edgetpu(report), _notes(report)))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR_META}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], left: Sequence[int] = (0,)) -> str:
    """Numbers right-aligned, the ``left`` columns (labels, notes) left-aligned."""
    head = "".join(f'<th{" class=l" if i in left else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(_cell(c, i in left) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Cell, left: bool) -> str:
    css = "l" if left else ""
    if isinstance(value, tuple):
        value, extra = value
        css = f"{css} {extra}".strip()
    text = "–" if value is None else (fmt(value) if isinstance(value, float) else str(value))
    return f'<td class="{css}">{escape(text)}</td>' if css else f"<td>{escape(text)}</td>"


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _plots(svgs: Sequence[str | None]) -> str:
    return '<div class="plots">' + "".join(s for s in svgs if s) + "</div>"


def _header(report: dict[str, Any], title: str) -> str:
    b, ref = report["bundle"], report["reference"]
    against = (f"the SB3 model <code>{escape(str(ref['model']))}</code>" if ref["actions"] == "sb3_predict"
               else "the bundle's <code>policy.onnx</code> (no --model given)")
    return (f"<h1>{escape(title)}</h1>"
            f"<p class=meta>bundle <code>{escape(b['path'])}</code>, built {escape(b['created'])}; report "
            f"{escape(report['created'])}, schema {escape(report['schema'])} v{report['schema_version']}</p>"
            f"<p class=meta>int8 model <code>{escape(b['model_file'])}</code> vs {against}; "
            f"{escape(b['output'])} post-processed by {escape(b['postprocess'])}</p>")


def _checks(report: dict[str, Any]) -> str:
    rows = []
    for c in report["thresholds"]["checks"]:
        mark, css = _MARK[c["status"]]
        css = css if c["enforced"] or c["status"] != "undefined" else "na"
        share = c["name"] != "min_score"
        value = c["value"] if c["value"] is None else (_pct(c["value"]) if share else f"{c['value']:.3f}")
        limit = _pct(c["threshold"]) if share else f"{c['threshold']:.3f}"
        rows.append([(mark, css), c["metric"], value, f"{c['comparison']} {limit}",
                     "enforced" if c["enforced"] else "advisory", c["note"]])
    verdict = "passed" if report["thresholds"]["passed"] else "FAILED (an enforced threshold)"
    return (f"<h2>Verdict: {escape(verdict)}</h2>"
            + _table(["", "figure", "value", "threshold", "kind", "note"], rows, left=(0, 1, 5))
            + "<p class=note>Advisory targets are shown when no threshold is given; only enforced ones "
              "(--max-action-error, --min-agreement, --min-score) fail the command (exit 3).</p>")


def _numeric(report: dict[str, Any], data: PlotData) -> str:
    v = report["validation"]
    raw = v["raw_output"]
    out = [f"<h2>Numeric error on {v['samples']} held-out observations</h2>",
           _table(["raw outputs", "mean |err|", "p99 |err|", "max |err|", "quantization step", "max err in steps"],
                  [["int8 vs float", raw["mean_abs_error"], raw["p99_abs_error"], raw["max_abs_error"],
                    raw["quantization_step"], raw["max_error_in_steps"]]])]
    if "continuous" in v:
        c = v["continuous"]
        rows = [[f"action[{d}]", e["mean_abs_error"], e["p99_abs_error"], e["max_abs_error"],
                 _pct(e["mean_share_of_range"]), _pct(e["p99_share_of_range"]), _pct(e["max_share_of_range"])]
                for d, e in enumerate(c["per_dimension"])]
        rows.append([("all", "l"), None, None, None, _pct(c["mean_share_of_range"]), _pct(c["p99_share_of_range"]),
                     _pct(c["max_share_of_range"])])
        out.append(_table(["action", "mean |err|", "p99 |err|", "max |err|", "mean, % range", "p99, % range",
                           "max, % range"], rows))
    else:
        d = v["discrete"]
        gap = d.get("disagreement_float_gap") or {}
        out.append(_table(["argmax", "agreement", "decisive states", "agreement on decisive", "disagreements",
                           "median float gap", "float gap where they differ (median / p90 / max)"],
                          [["int8 vs float", _pct(d["agreement"]), _pct(d["decisive_share"]),
                            _pct(d["decisive_agreement"]), d["disagreements"], d["float_gap_median"],
                            " / ".join(fmt(gap[k]) for k in ("median", "p90", "max")) if gap else "–"]]))
        if d.get("branches"):
            out.append(f"<p class=note>One decision per branch: {escape(d['decision'])}. Figures above count "
                       f"(state, branch) decisions; the whole action agrees on {_pct(d['action_agreement'])} "
                       "of the states.</p>")
            out.append(_table(["branch", "agreement", "decisive states", "agreement on decisive", "disagreements"],
                              [[b["name"], _pct(b["agreement"]), _pct(b["decisive_share"]),
                                _pct(b["decisive_agreement"]), b["disagreements"]] for b in d["branches"]]))
        out.append("<p class=note>A disagreement where the float gap is below the output step is a harmless tie; "
                   "one on a decisive state changes what the policy does.</p>")
    out.append(_plots(plots.action_scatters(report, data) + [plots.error_histogram(report, data)]))
    return "".join(out)


def _closed_loop(report: dict[str, Any]) -> str:
    loop = report["closed_loop"]
    out = ["<h2>Closed loop</h2>"]
    if loop["status"] != "ok":
        return out[0] + f"<p class=note>Skipped: {escape(loop['note'])}</p>"
    rows = [[name, s["mean"], s["std"], min(s["returns"]), max(s["returns"]), sum(s["lengths"]) / len(s["lengths"])]
            for name in ("float", "int8", "random") if (s := loop[name]) is not None]
    score = loop["normalized_score"]
    out.append(f"<p class=meta>{loop['episodes']} episodes of <code>{escape(loop['env_id'])}</code> per policy, "
               f"seeds {loop['seeds'][0]}..{loop['seeds'][-1]}; normalized score "
               f"(R_int8 − R_random) / (R_float − R_random) = <b>{'–' if score is None else f'{score:.3f}'}</b></p>")
    out.append(_table(["policy", "mean return", "std", "min", "max", "mean length"], rows))
    if loop["note"]:
        out.append(f"<p class=note>{escape(loop['note'])}</p>")
    out.append(_plots([plots.returns_plot(loop)]))
    return "".join(out)


def _layers(report: dict[str, Any]) -> str:
    section = report["layers"]
    out = ["<h2>Per-layer error</h2>"]
    if section["status"] == "unavailable":
        return out[0] + f"<p class=note>Unavailable: {escape(section['note'])}</p>"
    out.append(f"<p class=note>{section['samples']} held-out observations through {escape(section['interpreter'])}. "
               "<b>Local</b>: the float layer fed the int8 model's own input vs its int8 output, what this layer "
               "loses by itself (about 0.29 steps when it only rounds). <b>Accumulated</b>: vs the float model fed "
               "the float observation. Ranked by local error.</p>")
    rows = [[e["rank"], plots.layer_label(e), e["size"], e["quantization_step"], e["rmse"],
             e["rmse_in_steps"], e["max_error_in_steps"], _pct(e["clipped_share"]), e["accumulated_rmse"],
             e["accumulated_rmse_in_steps"]] for e in sorted(section["layers"], key=lambda e: e["rank"])]
    out.append(_table(["rank", "layer", "size", "step", "local RMSE", "in steps", "max in steps", "clipped",
                       "accumulated RMSE", "in steps"], rows, left=(1,)))
    if section["note"]:
        out.append(f"<p class=note>{escape(section['note'])}</p>")
    out.append(_plots([plots.layer_bars(section)]))
    return "".join(out)


def _coverage(report: dict[str, Any]) -> str:
    section = report["coverage"]
    if section.get("image"):
        return _image_coverage(section)
    rows = [[(f["name"], "flag" if f["flagged"] else ""), f"{fmt(f['calibration_range'][0])} .. "
             f"{fmt(f['calibration_range'][1])}", f"{fmt(f['held_out_range'][0])} .. {fmt(f['held_out_range'][1])}",
             f"{fmt(f['int8_range'][0])} .. {fmt(f['int8_range'][1])}", f["int8_step"],
             _pct(f["outside_calibration_share"]), (_pct(f["saturated_share"]), "flag" if f["flagged"] else ""),
             f["max_clipped_steps"]]
            for f in section["features"]]
    flagged = section["flagged"]
    summary = (f"{len(flagged)} feature(s) clip held-out values by more than one int8 input step: "
               f"{', '.join(flagged)}. Calibrate on observations that cover them." if flagged
               else "No feature clips held-out values by more than one int8 input step.")
    return ("<h2>Input coverage</h2>"
            + f"<p class=note>{escape(summary)} ({section['samples']} held-out observations)</p>"
            + _table(["feature", "calibration range", "held-out range", "int8 range", "int8 step",
                      "outside calibration", "saturated", "max clipped, steps"], rows)
            + _discrete_inputs(section.get("discrete_inputs"))
            + _plots([plots.coverage_ranges(section)]))


def _image_coverage(section: dict[str, Any]) -> str:
    """Image observations: one row per channel (a row per pixel would say nothing)."""
    image = section["image"]
    rows = [[str(c["channel"]), f"{fmt(c['calibration_range'][0])} .. {fmt(c['calibration_range'][1])}",
             f"{fmt(c['held_out_range'][0])} .. {fmt(c['held_out_range'][1])}", c["held_out_mean"]]
            for c in image["channels"]]
    shape = "x".join(str(v) for v in image["shape"])
    return ("<h2>Input coverage</h2>"
            + f"<p class=note>{escape(image['layout'])} {shape} images. {escape(image['note'])} "
              f"({section['samples']} held-out observations)</p>"
            + _table(["channel", "calibration pixels", "held-out pixels", "held-out mean"], rows))


def _edgetpu(report: dict[str, Any]) -> str:
    """Which part of the int8 model the Edge TPU runs and which the CPU (absent in reports that predate it)."""
    tpu = report.get("edgetpu")
    if not isinstance(tpu, dict):
        return ""
    verdict = ("every op is predicted on the Edge TPU" if tpu["fully_mappable"]
               else "the Edge TPU cannot run all of it: edgetpu_compiler puts the ops from the graph cut on the CPU")
    compiled = "the bundle holds a compiled Edge TPU model" if tpu["compiled"] else \
        "not compiled here (edgetpu_compiler was not run)"
    rows = [[op["index"], op["op"], ("yes", "pass") if op["on_tpu"] else ("no — CPU", "fail"), op["reason"]]
            for op in tpu["ops"]]
    return (f"<h2>Edge TPU: which part runs where</h2><p>{escape(tpu['placement'])}; {escape(verdict)}; "
            f"{escape(compiled)}.</p>"
            + _table(["#", "op", "Edge TPU", "reason"], rows, left=(1, 3))
            + "<p class=note>A prediction from Coral's published requirements (<code>edgekit check</code>); "
              "the compiler has the last word. The CPU int8 model runs everywhere.</p>")


def _discrete_inputs(section: dict[str, Any] | None) -> str:
    """One-hot and MultiBinary features: how often each is on, and the int8 levels of 0 and 1."""
    if not section:
        return ""
    rows = []
    for g in section["groups"]:
        for name, cal, held, levels in zip(g["features"], g["calibration_on"], g["held_out_on"], g["int8_levels"]):
            unseen = name in g["unseen_in_calibration"]
            rows.append([(name, "flag" if unseen else ""), g["kind"].replace("_", "-"), cal, held,
                         f"{fmt(levels[0])} / {fmt(levels[1])}"])
    exact = ("0 and 1 are exact int8 levels for every one-hot and binary feature." if section["exact_levels"]
             else "Some one-hot or binary features do not take exact int8 levels (plain conversion?).")
    unseen = section["unseen_in_calibration"]
    tail = (f" Never on in the calibration set but on in the held-out set: {', '.join(unseen)}." if unseen else "")
    return ("<h3>One-hot and binary inputs</h3>" + f"<p class=note>{escape(exact + tail)}</p>"
            + _table(["feature", "kind", "on in calibration", "on in held-out", "int8 levels of 0 / 1"], rows))


def _notes(report: dict[str, Any]) -> str:
    notes = "".join(f"<li>{escape(n)}</li>" for n in report["notes"]) or "<li>none</li>"
    versions = report["versions"]
    rows = [[name, versions["report"].get(name, "–"), versions["bundle"].get(name, "–")]
            for name in sorted(set(versions["report"]) | set(versions["bundle"]))]
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report["timings_s"].items())
    return (f"<h2>Notes</h2><ul>{notes}</ul><details><summary>versions and timings</summary>"
            + _table(["package", "report host", "build host"], rows) + f"<p class=note>{escape(timings)}</p>"
            + "</details>")
