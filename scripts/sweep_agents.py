"""Sweep: build every published agent in a folder and score it against SB3, one table for all.

Finds every SB3 model under the folders given (rl-zoo3 run folders ``ALGO/ENV_ID_1/``, Hugging Face hub
snapshot folders, or bare zips) and builds each through the real ``edgekit build`` command (its parser and
handler, default options) in a child process of its own, so that a crash, a hang or a memory blow-up of one
agent costs that agent only. Each agent is scored the way ``edgekit report`` scores it: the numbers are read
from the ``report.json`` the build wrote with the report's own code (``edgekit.report``): numeric error on
the held-out rollouts against SB3's ``predict`` (action error as a share of the range, or agreement on
decisive states), the closed-loop normalized score, and the Edge TPU placement ``edgekit check`` predicts.
When a build stops with a fix it can name exactly (an ``--env``/``--env-kwargs`` that restores an older
observation layout), the sweep applies it once, as a user would, and says so.

Results are cached per agent (``OUT/rows/``): an agent is rebuilt only when its files, the edgekit source
or the sweep's build options change, so an interrupted sweep resumes where it stopped. Writes
``OUT/zoo-sweep.md`` (table, summary, build-time distribution, measured causes of fidelity misses),
``OUT/zoo-sweep.json`` and ``OUT/zoo-sweep-summary.md``; ``--docs DIR`` copies them there.

    nice -n 10 python scripts/sweep_agents.py ZOO_DIR -o sweep-out/ [--docs docs]
                                             [--only PATTERN ...] [--rebuild] [--timeout S] [--max-rss-gib G]
                                             [--build-args "--report-episodes 5"]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The targets of issue 15 and scripts/bench_fidelity.py: continuous actions within 0.5 % (mean) and 2 % (p99)
# of the action range, discrete ones agreeing on >= 99.5 % of decisive states, closed loop >= 0.99.
TARGETS = {"mean": 0.005, "p99": 0.02, "decisive": 0.995, "score": 0.99}
FAMILIES = (  # env id prefixes -> family, for the summary
    ("goal-conditioned (HER)", ("FetchReach", "FetchPush", "FetchSlide", "FetchPickAndPlace", "Panda")),
    ("MuJoCo", ("Ant", "HalfCheetah", "Hopper", "Humanoid", "Swimmer", "Walker2d", "InvertedPendulum",
                "InvertedDoublePendulum", "Reacher", "Pusher")),
    ("Box2D", ("LunarLander", "BipedalWalker", "CarRacing")),
    ("classic control", ("Acrobot", "CartPole", "MountainCar", "Pendulum")),
)
# Why a build stopped, by the error class edgekit raised (the CLI's one-line error says the rest).
REASONS = {
    "EnvironmentLayoutError": "observation layout: no env version here reproduces it",
    "MissingDependencyError": "env needs a package",
    "EnvironmentUnavailableError": "env fails with the installed packages",
    "UnsupportedModelError": "unsupported",
    "UnsafePickleError": "restricted loader refuses an object (needs --trust-pickle)",
    "ModelFileError": "model file",
    "EnvironmentMismatchError": "env does not fit the model",
}


@dataclass(frozen=True)
class Agent:
    """One model to build: ``path`` is what ``edgekit build`` is given (a run/snapshot folder, or a zip)."""

    name: str
    path: Path
    files: tuple[Path, ...]  # everything the build reads (the cache key)


# --- finding the agents ------------------------------------------------------------------------------


def discover(roots: list[Path]) -> list[Agent]:
    """Every SB3 model zip under ``roots``: its folder when that folder holds only it (run folder, hub
    snapshot), else the zip itself."""
    agents: list[Agent] = []
    for root in roots:
        zips = [root] if root.is_file() else sorted(p for p in root.rglob("*.zip") if _is_sb3_zip(p))
        by_folder: dict[Path, list[Path]] = {}
        for path in zips:
            by_folder.setdefault(path.parent, []).append(path)
        for folder, models in sorted(by_folder.items()):
            for model in models:
                target = folder if len(models) == 1 and root.is_dir() else model
                base = root.parent if root.is_file() else root
                name = str((target if target != base else model).relative_to(base))
                agents.append(Agent(name, target, tuple(_companions(model))))
    return agents


def _is_sb3_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return {"data", "policy.pth"} <= set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _companions(model: Path) -> list[Path]:
    """The model and the files of its layout (``edgekit.host.loading.source``: run folder or snapshot)."""
    from edgekit.host.loading.source import resolve_source

    try:
        source = resolve_source(model)
    except Exception:  # the build reports it; the key is the zip alone
        return [model]
    extra = [p for p in (source.config, source.env_kwargs, source.vecnormalize) if p is not None]
    args = (model.parent / model.stem / "args.yml", model.parent / "args.yml")
    return [model, *extra, *(p for p in args if p.is_file())]


# --- the cache key -----------------------------------------------------------------------------------


def edgekit_fingerprint() -> dict[str, str]:
    """edgekit's version, the commit of the tree, and a hash of its source (what decides the results)."""
    import edgekit

    source = hashlib.sha256()
    package = Path(edgekit.__file__).parent
    for path in sorted(package.rglob("*.py")):
        source.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(["git", "-C", str(package.parent), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        commit = ""
    return {"version": edgekit.__version__, "commit": commit or "unknown", "source_sha256": source.hexdigest()[:16]}


def agent_key(agent: Agent, fingerprint: dict[str, str], build_args: list[str]) -> str:
    """The agent's files, the edgekit source that built it, the build options."""
    digest = hashlib.sha256()
    for path in agent.files:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps([fingerprint["version"], fingerprint["source_sha256"], build_args]).encode())
    return digest.hexdigest()[:24]


# --- one agent, in a child process ------------------------------------------------------------------


def child_main(result_path: Path, argv: list[str]) -> int:
    """The child: ``edgekit build ARGV`` through the CLI's own parser and handler; the outcome as JSON."""
    import argparse as child_argparse

    from edgekit.commands import register_all
    from edgekit.core.errors import EdgekitError

    parser = child_argparse.ArgumentParser(prog="edgekit")
    register_all(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    outcome: dict[str, Any] = {"status": "built"}
    fingerprint = edgekit_fingerprint()  # what this process runs, even if the tree changed since the sweep began
    try:
        outcome["exit_code"] = int(args.handler(args) or 0)
        outcome["seconds"] = round(time.perf_counter() - start, 1)
        try:
            outcome["attribution"] = error_attribution(Path(args.output))
        except Exception as exc:  # a diagnosis that fails must not turn a built agent into a failure
            outcome["attribution"] = {"error": f"{type(exc).__name__}: {exc}"}
    except EdgekitError as exc:
        suggestion = getattr(exc, "suggestion", None)
        outcome = {"status": "refused", "error_class": type(exc).__name__, "error": exc.message, "fix": exc.hint,
                   "suggestion": suggestion.to_dict() if suggestion is not None else None}
        print(f"error: {exc.message}\n  fix: {exc.hint}", file=sys.stderr)
    except Exception as exc:  # an edgekit bug: recorded as such
        import traceback

        traceback.print_exc()
        outcome = {"status": "failed", "error_class": type(exc).__name__, "error": f"unexpected {exc}", "fix": ""}
    outcome.setdefault("seconds", round(time.perf_counter() - start, 1))
    outcome["edgekit"] = fingerprint
    result_path.write_text(json.dumps(outcome))
    return 0


def error_attribution(bundle: Path) -> dict[str, Any]:
    """Which held-out observations carry the int8 error, measured on the bundle: the int8 actions (the
    runtime's, as the report computes them) against the conditioned float actor (policy.onnx, post-processed
    as SB3 does), split by whether some input feature lies outside the int8 input range (beyond one step),
    and whether the float action sits at a bound of the action space (the output range's edge)."""
    import numpy as np

    from edgekit.bundle.manifest import Manifest
    from edgekit.core.postprocess import PostProcessor
    from edgekit.report.build_report import _observations
    from edgekit.report.coverage import unclipped_levels
    from edgekit.report.reference import onnx_outputs
    from edgekit.runtime import EdgePolicy

    manifest = Manifest.read(bundle)
    if manifest.preprocess.image is not None:
        return {}
    policy = EdgePolicy.load(bundle, device="cpu")
    _calibration, held_out = _observations(bundle, manifest)
    space = manifest.action_space
    float_actions = PostProcessor(manifest.postprocess, space)(onnx_outputs(bundle, manifest, held_out))
    int8_actions = policy.predict(policy.observations_of(held_out))
    rows = len(held_out)
    levels = unclipped_levels(held_out, manifest.preprocess, manifest.models["cpu"].input.quant)
    outside = ((levels < -129) | (levels > 128)).any(axis=1)
    out: dict[str, Any] = {"samples": rows, "inputs_outside_share": float(outside.mean())}
    if space.kind == "box":
        low, high = space.low_array().reshape(-1), space.high_array().reshape(-1)
        span = np.where(np.isfinite(high - low), high - low, np.nan)
        a, b = float_actions.reshape(rows, -1), int8_actions.reshape(rows, -1)
        share = np.abs(a - b) / span
        worst = share.max(axis=1)
        at_bound = (np.isclose(a, low, atol=1e-3 * span) | np.isclose(a, high, atol=1e-3 * span))
        top = worst >= np.percentile(worst, 99)
        out.update(
            p99_all=float(np.nanpercentile(share, 99)),
            p99_inputs_inside=float(np.nanpercentile(share[~outside], 99)) if (~outside).any() else None,
            mean_inputs_inside=float(np.nanmean(share[~outside])) if (~outside).any() else None,
            worst_1pct_inputs_outside_share=float(outside[top].mean()),
            worst_1pct_at_bound_share=float(at_bound[top].any(axis=1).mean()),
            float_at_bound_share=float(at_bound.mean()),
            worst_dimension=int(np.nanargmax(np.nanpercentile(share, 99, axis=0))),
        )
    else:
        disagree = np.asarray(float_actions).reshape(rows, -1) != np.asarray(int8_actions).reshape(rows, -1)
        disagree = disagree.any(axis=1)
        out.update(disagreements=int(disagree.sum()),
                   disagreements_inputs_outside_share=float(outside[disagree].mean()) if disagree.any() else None)
    return out


@dataclass(frozen=True)
class Limits:
    timeout: float
    max_rss: int  # bytes


def run_child(argv: list[str], log: Path, limits: Limits) -> dict[str, Any]:
    """Run one build in its own process; a crash, a timeout or too much memory is that agent's result."""
    result = log.with_suffix(".result.json")
    result.unlink(missing_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(result), "--", *argv]
    start, peak = time.perf_counter(), 0
    with log.open("w") as out:
        out.write("$ edgekit " + " ".join(shlex.quote(a) for a in argv) + "\n")
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        killed = ""
        while proc.poll() is None:
            peak = max(peak, _rss(proc.pid))
            if time.perf_counter() - start > limits.timeout:
                killed = f"stopped after {limits.timeout:.0f} s (--timeout)"
            elif peak > limits.max_rss:
                killed = f"stopped at {peak / 2**30:.1f} GiB of memory (--max-rss-gib)"
            if killed:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.5)
    elapsed = round(time.perf_counter() - start, 1)
    if result.is_file() and not killed:
        outcome = json.loads(result.read_text())
    else:
        why = killed or f"the build process died (exit code {proc.returncode}) before writing its result"
        outcome = {"status": "failed", "error_class": "crash", "error": why, "fix": "see the log", "seconds": elapsed}
    outcome["wall_seconds"] = elapsed
    outcome["peak_rss_mib"] = round(peak / 2**20)
    return outcome


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --- one row of the table ---------------------------------------------------------------------------


def sweep_agent(agent: Agent, out: Path, build_args: list[str], limits: Limits) -> dict[str, Any]:
    """Build (and once more with the fix the build names, if it names one) and describe the outcome."""
    slug = agent.name.replace("/", "__")
    bundle, log = out / "bundles" / slug, out / "logs" / f"{slug}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = ["build", str(agent.path.resolve()), "-o", str(bundle.resolve()), "--force", *build_args]
    outcome = run_child(argv, log, limits)
    applied_fix = None
    suggestion = outcome.get("suggestion")
    if outcome["status"] == "refused" and suggestion and not suggestion.get("module"):
        applied_fix = {"refusal": outcome, "env": suggestion["id"], "env_kwargs": suggestion.get("kwargs") or {}}
        fix_args = ["--env", suggestion["id"], "--env-kwargs", json.dumps(applied_fix["env_kwargs"])]
        outcome = run_child(argv + fix_args, log.with_name(f"{slug}.fix.log"), limits)
    row = describe_agent(agent)
    row.update(result=outcome["status"], outcome=outcome, applied_fix=applied_fix, log=str(log.relative_to(out)))
    if outcome["status"] == "built":
        row.update(bundle_facts(bundle))
        row["bundle"] = str(bundle.relative_to(out))
    return row


def describe_agent(agent: Agent) -> dict[str, Any]:
    """What the zip says about itself (no unpickling): algorithm, policy class, SB3 release."""
    from edgekit.host.loading.model_zip import inspect_model_zip
    from edgekit.host.loading.source import resolve_source

    row: dict[str, Any] = {"agent": agent.name, "algorithm": "?", "policy": "?", "sb3_version": "?", "env_named": None}
    try:
        source = resolve_source(agent.path)
        row["env_named"] = source.env_id
        info = inspect_model_zip(source.model)
        row.update(algorithm=info.algorithm.name, policy=info.policy_class, sb3_version=info.sb3_version)
    except Exception as exc:  # the build's own error says it; the row keeps what is known
        row["inspect_error"] = f"{type(exc).__name__}: {exc}"
    row["family"] = family(row["env_named"] or agent.name)
    return row


def family(env_id: str) -> str:
    name = env_id.rsplit("/", 1)[-1]
    return next((fam for fam, prefixes in FAMILIES if name.startswith(prefixes)), "other")


def bundle_facts(bundle: Path) -> dict[str, Any]:
    """The bundle's manifest and the report the build wrote with edgekit.report (never recomputed here)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    report = json.loads((bundle / "report.json").read_text())
    env = manifest.get("env") or {"id": manifest["env_id"]}
    model_file = manifest["models"]["cpu"]["file"]
    edgetpu = report["edgetpu"]
    build = report.get("build") or {}
    return {
        "env_used": env["id"],
        "env_kwargs": env.get("kwargs") or {},
        "env_wrappers": [w["name"] for w in env.get("wrappers", [])],
        "vecnormalize": manifest["preprocess"].get("normalize") is not None,
        "model_bytes": (bundle / model_file).stat().st_size,
        "edgetpu": {"ops_on_tpu": edgetpu["ops_on_tpu"], "ops_total": edgetpu["ops_total"],
                    "fully_mappable": edgetpu["fully_mappable"], "kind": "prediction (edgekit check)"},
        "ops": sorted({op["op"] for op in edgetpu["ops"]}),
        "conditioning": build.get("conditioning"),
        "stage_seconds": build.get("timings_s"),
        "fidelity": fidelity_of(report),
        "score": report["closed_loop"].get("normalized_score"),
        "closed_loop": {k: report["closed_loop"].get(k) for k in ("status", "env_id", "episodes", "note")}
        | {name: (report["closed_loop"][name] or {}).get("mean") for name in ("float", "int8", "random")},
        "diagnosis": diagnose(report),
        "training_statistics": training_drift(bundle, manifest),
    }


def training_drift(bundle: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """How the observations of the env used here compare with the VecNormalize statistics of training (a
    layout or dynamics check of a renamed env: features that varied in training but are constant here, or
    whose mean moved by more than 3 training standard deviations)."""
    import numpy as np

    norm = manifest["preprocess"].get("normalize")
    if norm is None:
        return None
    with np.load(bundle / "calibration.npz") as data:
        held = np.asarray(data["held_out"], dtype=np.float64)
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    active = np.asarray(norm.get("active") or [True] * len(mean))
    varied = active & (std > 1e-3)
    dead = varied & (held.std(axis=0) < 1e-9)
    moved = varied & ~dead & (np.abs(held.mean(axis=0) - mean) > 3 * std)
    return {"features": int(active.sum()), "varied_in_training": int(varied.sum()),
            "constant_here": [int(i) for i in np.flatnonzero(dead)],
            "mean_moved_3_std": [int(i) for i in np.flatnonzero(moved)]}


def fidelity_of(report: dict[str, Any]) -> dict[str, Any]:
    """The report's headline figures (``edgekit.core.metrics``), as the report computed them."""
    from edgekit.core.metrics import describe

    validation = report["validation"]
    out: dict[str, Any] = {"headline": describe(validation, with_max=True), "samples": validation["samples"]}
    if "continuous" in validation:
        c = validation["continuous"]
        out.update(kind="continuous", mean=c["mean_share_of_range"], p99=c["p99_share_of_range"],
                   max=c["max_share_of_range"])
    else:
        d = validation["discrete"]
        out.update(kind="discrete", decisive=d["decisive_agreement"], agreement=d["agreement"],
                   decisive_share=d["decisive_share"])
    return out


def meets(row: dict[str, Any]) -> dict[str, bool | None]:
    """Each target: True, False, or None when it does not apply."""
    if row["result"] != "built":
        return {}
    f, score = row["fidelity"], row["score"]
    out: dict[str, bool | None] = {"mean": None, "p99": None, "decisive": None}
    if f["kind"] == "continuous":
        out["mean"] = f["mean"] is not None and f["mean"] <= TARGETS["mean"]
        out["p99"] = f["p99"] is not None and f["p99"] <= TARGETS["p99"]
    else:
        out["decisive"] = f["decisive"] is not None and f["decisive"] >= TARGETS["decisive"]
    out["score"] = None if score is None else score >= TARGETS["score"]
    return out


def diagnose(report: dict[str, Any]) -> dict[str, Any]:
    """Where the int8 error comes from, from the report's own sections: input coverage (held-out values
    outside the calibration range), the per-layer error, and the output range."""
    cover, layers, raw = report["coverage"], report["layers"], report["validation"]["raw_output"]
    features = cover.get("features") or []
    clipped = sorted(features, key=lambda f: -(f.get("max_clipped_steps") or 0.0))
    out: dict[str, Any] = {
        "features": len(features),
        "features_flagged": len(cover.get("flagged") or []),
        "flagged": (cover.get("flagged") or [])[:8],
        "worst_clip_steps": clipped[0].get("max_clipped_steps") if clipped else None,
        "worst_clip_feature": clipped[0].get("name") if clipped else None,
        "outside_calibration_share": max((f.get("outside_calibration_share") or 0.0 for f in features), default=0.0),
        "saturated_share": cover.get("saturated_share"),
        "output_max_error_steps": raw.get("max_error_in_steps"),
        "output_float_range": raw.get("float_range"),
    }
    entries = layers.get("layers") or []
    if entries:
        worst = min(entries, key=lambda e: e["rank"])
        first = next((e for e in entries if e["position"] == 0), None)
        out["worst_layer"] = {"position": worst["position"], "op": worst["op"],
                              "rmse_steps": worst.get("rmse_in_steps"),
                              "accumulated_rmse_steps": worst.get("accumulated_rmse_in_steps")}
        out["input_rmse_steps"] = first.get("rmse_in_steps") if first else None
        out["input_max_error_steps"] = first.get("max_error_in_steps") if first else None
        last = max(entries, key=lambda e: e["position"])
        out["output_rmse_steps"] = last.get("accumulated_rmse_in_steps")
    else:
        out["layers_note"] = layers.get("note")
    return out


# --- the tables --------------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def fidelity_cell(row: dict[str, Any]) -> str:
    f = row["fidelity"]
    if f["kind"] == "continuous":
        return f"{pct(f['mean'])} / {pct(f['p99'])}"
    return f"{pct(f['decisive'])} ({pct(f['agreement'], 1)})"


def result_cell(row: dict[str, Any]) -> str:
    outcome = row["outcome"]
    fix = row.get("applied_fix")
    fixed = (f"built with the build's fix `--env {fix['env']} --env-kwargs '{json.dumps(fix['env_kwargs'])}'`"
             if fix else "built")
    if row["result"] == "built":
        return fixed
    return f"{row['result']}: {outcome.get('error', '').replace('|', '/')}"


def env_cell(row: dict[str, Any]) -> str:
    if row["result"] != "built":
        return row.get("env_named") or "?"
    parts = [row["env_used"]]
    if row["env_used"] != row.get("env_named"):
        parts[0] += f" (named {row.get('env_named')})"
    if row["env_kwargs"]:
        parts.append(f"kwargs `{json.dumps(row['env_kwargs'], sort_keys=True)}`")
    parts += [f"in {w}" for w in row["env_wrappers"]]
    return "; ".join(parts)


def targets_cell(row: dict[str, Any]) -> str:
    marks = meets(row)
    if not marks:
        return ""
    names = {"mean": "mean", "p99": "p99", "decisive": "decisive", "score": "score"}
    missed = [names[k] for k, v in marks.items() if v is False]
    return "all met" if not missed else "missed: " + ", ".join(missed)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| agent | algorithm | env used | VecNormalize | result | fidelity: action error mean / p99 of the "
             "range, or decisive agreement (overall) | closed-loop score | build s | int8 model KiB | "
             "ops on the Edge TPU (predicted) | targets |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        built = row["result"] == "built"
        tpu = row["edgetpu"] if built else None
        lines.append("| " + " | ".join([
            row["agent"], row["algorithm"], env_cell(row), ("yes" if row["vecnormalize"] else "no") if built else "",
            result_cell(row), fidelity_cell(row) if built else "",
            (f"{row['score']:.3f}" if isinstance(row.get("score"), (int, float)) else "–") if built else "",
            f"{row['outcome']['seconds']:.0f}" if built else "",
            f"{row['model_bytes'] / 1024:.0f}" if built else "",
            f"{tpu['ops_on_tpu']}/{tpu['ops_total']}" if tpu else "",
            targets_cell(row),
        ]) + " |")
    return "\n".join(lines)


def reason_of(row: dict[str, Any]) -> str:
    outcome = row["outcome"]
    return REASONS.get(outcome.get("error_class", ""), outcome.get("error_class", "?"))


def summary(rows: list[dict[str, Any]]) -> str:
    built = [r for r in rows if r["result"] == "built"]
    lines = [f"{len(rows)} agents: {len(built)} built, {len(rows) - len(built)} refused or failed.", ""]
    stopped: dict[str, list[str]] = {}
    for row in rows:
        if row["result"] != "built":
            stopped.setdefault(f"{row['result']}: {reason_of(row)}", []).append(row["agent"])
    if stopped:
        lines += ["| not built | agents |", "|---|---|"]
        lines += [f"| {reason} ({len(names)}) | {', '.join(names)} |" for reason, names in sorted(stopped.items())]
        lines.append("")
    lines += ["| target | applies to | met | missed |", "|---|---|---|---|"]
    for key, label in (("mean", f"mean action error <= {pct(TARGETS['mean'], 1)} of the range"),
                       ("p99", f"p99 action error <= {pct(TARGETS['p99'], 0)} of the range"),
                       ("decisive", f"decisive agreement >= {pct(TARGETS['decisive'], 1)}"),
                       ("score", f"closed-loop normalized score >= {TARGETS['score']}")):
        marks = [meets(r).get(key) for r in built]
        applies = [m for m in marks if m is not None]
        lines.append(f"| {label} | {len(applies)} | {sum(applies)} | {len(applies) - sum(applies)} |")
    all_met = sum(1 for r in built if all(v is not False for v in meets(r).values()))
    lines += ["", f"All targets met by {all_met} of the {len(built)} built agents."]
    lines += ["", "| family | agents | built | all targets met |", "|---|---|---|---|"]
    for fam in sorted({r["family"] for r in rows}):
        members = [r for r in rows if r["family"] == fam]
        ok = [r for r in members if r["result"] == "built"]
        met = sum(1 for r in ok if all(v is not False for v in meets(r).values()))
        lines.append(f"| {fam} | {len(members)} | {len(ok)} | {met} |")
    lines += ["", build_times(built)]
    return "\n".join(lines)


def build_times(built: list[dict[str, Any]]) -> str:
    if not built:
        return "No agent built."
    seconds = sorted(r["outcome"]["seconds"] for r in built)

    def q(p: float) -> float:
        return seconds[min(len(seconds) - 1, int(round(p * (len(seconds) - 1))))]

    slowest = max(built, key=lambda r: r["outcome"]["seconds"])
    return (f"Build time (whole `edgekit build`, report included) over the {len(built)} built agents: "
            f"min {seconds[0]:.0f} s, median {q(0.5):.0f} s, p90 {q(0.9):.0f} s, max {seconds[-1]:.0f} s "
            f"({slowest['agent']}); total {sum(seconds) / 60:.0f} min.")


def causes(rows: list[dict[str, Any]]) -> str:
    """The measured causes of each fidelity miss: the report's coverage, layers and output sections, and the
    child's error attribution (which held-out observations carry the error)."""
    lines = ["| agent | missed | inputs beyond the int8 input range (> 1 step) | error with inputs inside | "
             "worst 1 %: float action at a bound | most error added at (report's layers) | vs training statistics |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        missed = [k for k, v in meets(row).items() if v is False]
        if not missed:
            continue
        d, a = row["diagnosis"], row["outcome"].get("attribution") or {}
        inputs = (f"{d['features_flagged']} of {d['features']} features (worst {d['worst_clip_feature']}: "
                  f"{d['worst_clip_steps']:.0f} steps); {pct(a.get('inputs_outside_share'), 1)} of observations"
                  if d["features_flagged"] else f"none of {d['features']} features")
        if "worst_1pct_inputs_outside_share" in a:
            inputs += f", {pct(a['worst_1pct_inputs_outside_share'], 0)} of the worst 1 %"
        elif a.get("disagreements_inputs_outside_share") is not None:
            inputs += f", {pct(a['disagreements_inputs_outside_share'], 0)} of the {a['disagreements']} disagreements"
        inside = (f"mean {pct(a.get('mean_inputs_inside'))}, p99 {pct(a.get('p99_inputs_inside'))}"
                  if "p99_inputs_inside" in a else "–")
        bound = pct(a.get("worst_1pct_at_bound_share"), 0) if "worst_1pct_at_bound_share" in a else "–"
        layer = (f"#{d['worst_layer']['position']} {d['worst_layer']['op']} (RMSE "
                 f"{_steps(d['worst_layer'].get('rmse_steps'))} steps; input {_steps(d.get('input_rmse_steps'))}; "
                 f"output {_steps(d.get('output_rmse_steps'))})" if "worst_layer" in d else d.get("layers_note", "?"))
        drift = row.get("training_statistics")
        drift_text = "no VecNormalize" if drift is None else (
            f"{len(drift['constant_here'])} of {drift['varied_in_training']} features that varied in training are "
            f"constant here; {len(drift['mean_moved_3_std'])} moved > 3 std")
        lines.append(f"| {row['agent']} | {', '.join(missed)} ({fidelity_cell(row)}; score {_score(row)}) | "
                     f"{inputs} | {inside} | {bound} | {layer} | {drift_text} |")
    return "\n".join(lines)


def _steps(value: Any) -> str:
    """An RMSE in int8 steps; the report has none for a layer it could not measure alone (e.g. a 1x1 CONV_2D)."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def _score(row: dict[str, Any]) -> str:
    return f"{row['score']:.3f}" if isinstance(row.get("score"), (int, float)) else "–"


def returns(rows: list[dict[str, Any]]) -> str:
    """The closed loop's mean returns: does the float agent perform in the env used here (a renamed id, a
    restored layout), and how close int8 comes."""
    lines = ["| agent | env used | float return | int8 return | random return | score |", "|---|---|---|---|---|---|"]
    for row in rows:
        if row["result"] != "built":
            continue
        loop = row["closed_loop"]
        cells = [f"{loop[k]:.1f}" if isinstance(loop.get(k), (int, float)) else "–"
                 for k in ("float", "int8", "random")]
        lines.append(f"| {row['agent']} | {env_cell(row)} | {' | '.join(cells)} | {_score(row)} |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    return "\n".join([
        "# Published RL Zoo agents, swept", "",
        f"Generated by `scripts/sweep_agents.py` on {meta['date']} (edgekit {meta['edgekit']['version']}, "
        f"commit {meta['edgekit']['commit']}; build options: `{' '.join(meta['build_args']) or 'defaults'}`), "
        f"{len(rows)} agents from {', '.join(meta['roots'])}. Scores are the build's own report "
        "(`report.json`, the code of `edgekit report`): held-out rollouts against SB3's `predict`, closed loop "
        f"over the report's episodes. Edge TPU figures are `edgekit check`'s prediction (no compiler here).",
        "", "## Summary", "", summary(rows), "",
        *(["## What the misses have in common", "", meta["notes"], ""] if meta.get("notes") else []),
        "## Measured causes of the fidelity misses", "", causes(rows), "",
        "## Every agent", "", table(rows), "",
        "## Closed loop: float, int8 and random returns in the env used", "", returns(rows), "",
    ])


# --- the sweep ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(Path(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", type=Path, help="folders of zoo agents / hub snapshots, or zips")
    parser.add_argument("-o", "--output", type=Path, default=Path("sweep-out"))
    parser.add_argument("--only", nargs="*", default=None, help="agents whose name contains one of these")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache")
    parser.add_argument("--tables-only", action="store_true",
                        help="build nothing: write the tables from the rows already in OUT/rows, whatever edgekit "
                             "built them (each row records its own edgekit version and source)")
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds per agent (default: 2400)")
    parser.add_argument("--max-rss-gib", type=float, default=8.0, help="memory per agent (default: 8 GiB)")
    parser.add_argument("--build-args", default="", help="extra `edgekit build` options, one string")
    parser.add_argument("--docs", type=Path, default=None, help="also copy the tables into this folder")
    parser.add_argument("--notes", type=Path, default=None,
                        help="a Markdown file of analysis to put above the causes table (e.g. docs/zoo-sweep-notes.md)")
    args = parser.parse_args(argv)
    out = args.output.resolve()
    (out / "rows").mkdir(parents=True, exist_ok=True)
    build_args = shlex.split(args.build_args)
    limits = Limits(args.timeout, int(args.max_rss_gib * 2**30))
    fingerprint = edgekit_fingerprint()
    agents = [a for a in discover(args.roots) if not args.only or any(k in a.name for k in args.only)]
    print(f"{len(agents)} agents; edgekit {fingerprint['version']} ({fingerprint['commit']}, source "
          f"{fingerprint['source_sha256']}); results in {out}", flush=True)
    rows = []
    for index, agent in enumerate(agents, 1):
        cached = out / "rows" / (agent.name.replace("/", "__") + ".json")
        if args.tables_only:
            if not cached.is_file():
                continue
            row = {**json.loads(cached.read_text()), "cached": True}
            fingerprint = row.get("edgekit") or fingerprint
        else:
            row = _cached_or_built(agent, out, build_args, limits, fingerprint, args.rebuild)
        rows.append(row)
        print(f"[{index}/{len(agents)}] {progress_line(row)}", flush=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "edgekit": fingerprint, "build_args": build_args,
            "roots": [r.resolve().name for r in args.roots],  # names only: no machine paths in docs
            "targets": TARGETS,
            "notes": args.notes.read_text() if args.notes is not None else ""}
    write_outputs(rows, meta, out, args.docs)
    print("\n" + summary(rows), flush=True)
    return 0


def _cached_or_built(agent: Agent, out: Path, build_args: list[str], limits: Limits, fingerprint: dict[str, str],
                     rebuild: bool) -> dict[str, Any]:
    key = agent_key(agent, fingerprint, build_args)
    cached = out / "rows" / (agent.name.replace("/", "__") + ".json")
    if not rebuild and cached.is_file():
        row = json.loads(cached.read_text())
        if row.get("key") == key:
            row["cached"] = True
            return row
    row = sweep_agent(agent, out, build_args, limits)
    ran = row["outcome"].get("edgekit") or fingerprint  # a crashed child reports none: the sweep's
    row.update(key=agent_key(agent, ran, build_args), edgekit=ran)
    cached.write_text(json.dumps(row, indent=1))
    row["cached"] = False
    return row


def progress_line(row: dict[str, Any]) -> str:
    where = " (cached)" if row.get("cached") else ""
    if row["result"] != "built":
        return f"{row['agent']}: {row['result']}{where}: {row['outcome'].get('error', '')[:300]}"
    score = f"{row['score']:.3f}" if isinstance(row["score"], (int, float)) else "–"
    fixed = " (with the build's --env fix)" if row.get("applied_fix") else ""
    return (f"{row['agent']}: built{fixed} in {row['outcome']['seconds']:.0f} s{where}: {row['env_used']}; "
            f"{row['fidelity']['headline']}; score {score}; {targets_cell(row)}")


def write_outputs(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path, docs: Path | None) -> None:
    (out / "zoo-sweep.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (out / "zoo-sweep.md").write_text(markdown(rows, meta))
    (out / "zoo-sweep-summary.md").write_text(summary(rows) + "\n")
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        for name in ("zoo-sweep.md", "zoo-sweep.json", "zoo-sweep-summary.md"):
            shutil.copy(out / name, docs / name)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
