"""Assemble the quantization-error report of a bundle and write ``report.json`` + ``report.html``.

Numeric error is measured on the bundle's held-out observations (never the
calibration set, which shaped the int8 ranges and would flatter the model).
The int8 side always runs through ``edgekit.runtime.EdgePolicy``, the code
path the device takes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.files import verify_file
from edgekit.bundle.layout import (
    BUILD_REPORT_SCHEMA,
    CALIBRATION,
    REPORT_HTML,
    REPORT_JSON,
    record_files,
    sha256_file,
    write_text_atomic,
)
from edgekit.bundle.manifest import Manifest
from edgekit.core.env_spec import EnvOverride, EnvSpec
from edgekit.core.errors import BundleError, UsageError
from edgekit.core.metrics import fidelity_metrics
from edgekit.core.postprocess import PostProcessor
from edgekit.report import closed_loop, coverage, layers
from edgekit.report.plot_data import PlotData
from edgekit.report.reference import load_sb3_agent, onnx_outputs, policy_raw_outputs
from edgekit.report.schema import SCHEMA_NAME, SCHEMA_VERSION
from edgekit.report.thresholds import ADVISORY, EXIT_THRESHOLD_FAILED, Check, Thresholds, evaluate

Log = Callable[[str], None]


@dataclass(frozen=True)
class ReportResult:
    """The written report, its files and the threshold checks."""

    report: dict[str, Any]
    json_path: Path
    html_path: Path
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """No enforced threshold failed (advisory targets never fail a run)."""
        return not any(c.failed for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_THRESHOLD_FAILED


def write_report(bundle_dir: Path, model_path: Path | None, env: EnvSpec | EnvOverride | None, episodes: int,
                 seed: int, thresholds: Thresholds, out_dir: Path | None, log: Log | None = None,
                 bundle_path: Path | None = None) -> ReportResult:
    """Measure, then write ``report.json`` and ``report.html`` into ``out_dir`` (default: the bundle).

    Writing into the bundle keeps it verifiable: the manifest's sha256 of the
    two files is updated, and a build report already there is kept under ``build``.
    ``bundle_path``: where the bundle lives for its user, when ``bundle_dir`` is the build's
    staging directory that is renamed into place afterwards (the report names that path).
    """
    bundle_dir = Path(bundle_dir)
    out_dir = Path(out_dir) if out_dir is not None else bundle_dir
    report, plots = build_report(bundle_dir, model_path, env, episodes, seed, thresholds, log)
    if bundle_path is not None:
        report["bundle"]["path"] = str(Path(bundle_path).resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    in_bundle = out_dir.resolve() == bundle_dir.resolve()
    if not in_bundle:
        _check_replaceable_reports(out_dir, (bundle_dir, model_path))
    previous = _build_section(out_dir / REPORT_JSON) if in_bundle else None
    if previous is not None:
        report["build"] = previous
    from edgekit.report.html import render

    json_path, html_path = out_dir / REPORT_JSON, out_dir / REPORT_HTML
    write_text_atomic(json_path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(html_path, render(report, plots))
    if in_bundle:
        _record_in_manifest(bundle_dir, (REPORT_JSON, REPORT_HTML))
    checks = tuple(Check(**c) for c in report["thresholds"]["checks"])
    return ReportResult(report=report, json_path=json_path, html_path=html_path, checks=checks)


def build_report(bundle_dir: Path, model_path: Path | None, env: EnvSpec | EnvOverride | None, episodes: int,
                 seed: int, thresholds: Thresholds, log: Log | None = None) -> tuple[dict[str, Any], PlotData]:
    """The report dict (schema in ``edgekit.report.schema``) and the arrays for its plots.

    ``env``: the env of the closed loop (the build's own), or a command line's override of the bundle's.
    """
    from edgekit.host.stack_versions import stack_versions
    from edgekit.runtime import EdgePolicy

    say = log or (lambda _msg: None)
    thresholds.check()
    _check_request(model_path, episodes, thresholds)
    manifest = Manifest.read(bundle_dir)
    policy = EdgePolicy.load(bundle_dir, device="cpu")
    calibration, held_out = _observations(bundle_dir, manifest)
    timings: dict[str, float] = {}
    notes: list[str] = []

    start = time.perf_counter()
    agent = load_sb3_agent(model_path, manifest) if model_path is not None else None
    model = agent.model if agent is not None else None
    timings["load model"] = time.perf_counter() - start
    say(f"numeric error on {len(held_out)} held-out observations")
    start = time.perf_counter()
    validation, plots = _numeric(bundle_dir, manifest, policy, agent, held_out)
    timings["numeric error"] = time.perf_counter() - start

    start = time.perf_counter()
    spec = env if isinstance(env, EnvSpec) else (env or EnvOverride()).apply(manifest.environment)
    loop = _closed_loop(spec, manifest, policy, model, episodes, seed, say) if episodes else \
        closed_loop.skipped("--episodes 0: no episode was played")
    timings["closed loop"] = time.perf_counter() - start

    say("per-layer error")
    start = time.perf_counter()
    layer_section = _layer_section(bundle_dir, manifest, held_out, notes)
    timings["per-layer error"] = time.perf_counter() - start

    cover = _coverage_section(manifest, policy, calibration, held_out, notes)
    if model is None:
        notes.append("no --model: actions are compared with the bundle's policy.onnx (the conditioned float "
                     "actor, post-processed), not with the SB3 model itself")
    checks = evaluate(thresholds, validation, loop)
    report = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "bundle": _bundle_section(bundle_dir, manifest),
        "reference": _reference_section(model_path),
        "validation": validation,
        "closed_loop": loop,
        "layers": layer_section,
        "coverage": cover,
        "edgetpu": _edgetpu_section(bundle_dir, manifest),
        "thresholds": {
            "given": thresholds.to_dict(),
            "advisory": ADVISORY.to_dict(),
            "checks": [c.to_dict() for c in checks],
            "passed": not any(c.failed for c in checks),
        },
        "notes": notes,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "versions": {"report": stack_versions(), "bundle": dict(manifest.versions)},
    }
    return report, plots


def _edgetpu_section(bundle_dir: Path, manifest: Manifest) -> dict[str, Any]:
    """Which ops of the CPU int8 model the Edge TPU runs, as ``edgekit check`` predicts."""
    from edgekit.edgetpu.check import check_model

    check = check_model(verify_file(bundle_dir, manifest, manifest.models["cpu"].file))
    return {
        "fully_mappable": check.fully_mappable,
        "ops_total": len(check.ops),
        "ops_on_tpu": check.tpu_op_count,
        "cut_index": check.cut_index,
        "placement": check.placement,
        "compiled": "edgetpu" in manifest.models,
        "ops": [{"index": op.index, "op": op.op, "on_tpu": op.on_tpu, "reason": op.reason} for op in check.ops],
    }


def _check_request(model_path: Path | None, episodes: int, thresholds: Thresholds) -> None:
    if not 0 <= episodes <= 100_000:
        raise UsageError("--episodes must lie between 0 and 100,000")
    if thresholds.min_score is not None and (model_path is None or episodes == 0):
        raise UsageError("--min-score needs the closed loop of the float policy",
                         hint="pass --model MODEL.zip (the model the bundle was built from) and --episodes >= 1")


def _observations(bundle_dir: Path, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    path = verify_file(bundle_dir, manifest, CALIBRATION)
    size = manifest.observation_space.features
    with np.load(path, allow_pickle=False) as data:
        if "held_out" not in data.files or "calibration" not in data.files:
            raise BundleError(f"{path} has no held_out and calibration observations")
        dtype = np.uint8 if manifest.preprocess.image is not None else np.float32  # images: pixels
        sets = [np.asarray(data[k]) for k in ("calibration", "held_out")]
        if dtype == np.uint8 and any(v.dtype != np.uint8 for v in sets):
            raise BundleError(f"{path} holds image observations that are not uint8 pixels")
        sets = [v.astype(dtype, copy=False) for v in sets]
    for values in sets:
        if values.ndim != 2 or values.shape[1] != size or len(values) == 0 or not np.isfinite(values).all():
            raise BundleError(f"{path} holds observations that do not fit the bundle ({size} finite features)")
    return sets[0], sets[1]


def _numeric(bundle_dir: Path, manifest: Manifest, policy: Any, agent: Any, held_out: np.ndarray
             ) -> tuple[dict[str, Any], PlotData]:
    """``agent``: the SB3 model the bundle was built from (a LoadedAgent), or None (policy.onnx is the
    float reference)."""
    obs = policy.observations_of(held_out)  # as the env returns them (a dict of batches for a Dict space)
    space = manifest.action_space
    float_raw = onnx_outputs(bundle_dir, manifest, held_out)
    if agent is not None:
        float_actions = np.asarray(agent.model.predict(_as_trained(policy, obs), deterministic=True)[0])
    else:
        float_actions = PostProcessor(manifest.postprocess, space)(float_raw)
    int8_raw = policy.predict_outputs(obs)
    int8_actions = policy.predict(obs)
    step = manifest.models["cpu"].output.quant.scale
    own = policy_raw_outputs(agent, manifest, held_out) if agent is not None and space.kind == "discrete" else None
    metrics = fidelity_metrics(float_raw, int8_raw, float_actions, int8_actions, space, step, policy_out=own)
    metrics["observation_set"] = "held_out"
    rows = len(held_out)
    plots = PlotData(float_actions.reshape(rows, -1), int8_actions.reshape(rows, -1), float_raw, int8_raw)
    return metrics, plots


def _as_trained(policy: Any, obs: Any) -> Any:
    """Observations as the SB3 model saw them in training (behind VecNormalize, if it was)."""
    norm = policy.manifest.preprocess.normalize
    return obs if norm is None else policy.encoder.normalized(obs, norm)  # as is: a dict, integers...


def _closed_loop(spec: EnvSpec, manifest: Manifest, policy: Any, model: Any, episodes: int, seed: int,
                 say: Log) -> dict[str, Any]:
    from edgekit.host.gym_envs import check_env_fits, make_env

    env_id = spec.id
    say(f"closed loop: {episodes} episodes of {spec.describe()} per policy")
    env = make_env(spec)
    try:
        check_env_fits(env_id, env, manifest.observation_space, manifest.action_space)
        float_actor = None if model is None else \
            (lambda obs: model.predict(_as_trained(policy, obs), deterministic=True)[0])
        return closed_loop.closed_loop(env, env_id, episodes, seed, policy.predict, float_actor)
    finally:
        env.close()


def _layer_section(bundle_dir: Path, manifest: Manifest, held_out: np.ndarray, notes: list[str]) -> dict[str, Any]:
    """Per-layer error, best effort: a graph it cannot match must not cost the whole report."""
    try:
        return layers.layer_errors(bundle_dir, manifest, held_out)
    except Exception as exc:
        section = layers.unavailable(f"{type(exc).__name__}: {exc}")
        notes.append(f"per-layer error unavailable: {section['note']}")
        return section


def _coverage_section(manifest: Manifest, policy: Any, calibration: np.ndarray, held_out: np.ndarray,
                      notes: list[str]) -> dict[str, Any]:
    """How well the calibration range covers the held-out observations, and what clips (noted)."""
    quant = manifest.models["cpu"].input.quant
    image = manifest.preprocess.image
    cover = coverage.image_coverage(calibration, held_out, image, quant) if image is not None else \
        coverage.input_coverage(calibration, held_out, manifest.preprocess, quant,
                                manifest.observation_space.shape, policy.encoder.feature_names())
    if image is None and policy.encoder.groups():
        cover["discrete_inputs"] = coverage.discrete_inputs(calibration, held_out, policy.encoder,
                                                            manifest.preprocess, quant)
        unseen = cover["discrete_inputs"]["unseen_in_calibration"]
        if unseen:
            notes.append(f"{len(unseen)} one-hot class(es) or bit(s) occur in the held-out observations but never "
                         f"in the calibration set: {', '.join(unseen[:10])}")
    if cover["flagged"]:
        notes.append(f"{len(cover['flagged'])} observation feature(s) clip held-out values by more than one "
                     f"int8 input step: {', '.join(cover['flagged'])}")
    return cover


def _bundle_section(bundle_dir: Path, manifest: Manifest) -> dict[str, Any]:
    cpu = manifest.models["cpu"]
    return {
        "path": str(Path(bundle_dir).resolve()),
        "created": manifest.created,
        "env_id": manifest.env_id,
        "algorithm": manifest.algorithm,
        "source": dict(manifest.source),
        "observation_space": manifest.observation_space.to_dict(),
        "action_space": manifest.action_space.to_dict(),
        "output": manifest.output,
        "postprocess": manifest.postprocess,
        "model_file": cpu.file,
        "input_quantization": cpu.input.quant.to_dict(),
        "output_quantization": cpu.output.quant.to_dict(),
        "conditioning": dict(manifest.conditioning),
    }


def _reference_section(model_path: Path | None) -> dict[str, Any]:
    if model_path is None:
        return {"actions": "policy_onnx", "raw_outputs": "policy_onnx", "model": None, "model_sha256": None}
    return {"actions": "sb3_predict", "raw_outputs": "policy_onnx", "model": str(Path(model_path).resolve()),
            "model_sha256": sha256_file(Path(model_path))}


def _build_section(path: Path) -> dict[str, Any] | None:
    """The bundle's build report (or the one an earlier report kept), so replacing report.json loses nothing."""
    data = _json_object(path)
    if data.get("schema") == SCHEMA_NAME:
        return data.get("build") if isinstance(data.get("build"), dict) else None
    return data if data.get("schema") == BUILD_REPORT_SCHEMA else None


def _json_object(path: Path) -> dict[str, Any]:
    """A JSON file's object, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_replaceable_reports(out_dir: Path, inputs: tuple[Path | None, ...]) -> None:
    """Outside the bundle, replace a report.json or report.html only when edgekit wrote it."""
    from edgekit.bundle.overwrite import check_replaceable_file
    from edgekit.report.html import GENERATOR_META

    def json_is_ours(path: Path) -> bool:
        return _json_object(path).get("schema") in (SCHEMA_NAME, BUILD_REPORT_SCHEMA)

    def html_is_ours(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return GENERATOR_META in fh.read(4096)
        except OSError:
            return False

    for name, is_ours in ((REPORT_JSON, json_is_ours), (REPORT_HTML, html_is_ours)):
        target = out_dir / name
        if target.exists() or target.is_symlink():
            check_replaceable_file(target, inputs, is_ours, "report")


def _record_in_manifest(bundle_dir: Path, names: tuple[str, ...]) -> None:
    """Update the sha256 of the files just written, and only those, in the bundle's manifest."""
    record_files(bundle_dir, Manifest.read(bundle_dir), names)
