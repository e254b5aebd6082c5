"""`edgekit report` on real bundles: schema, numbers recomputed independently, thresholds, HTML."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import REPO, run_cli

from edgekit.bundle import Manifest, verify_all
from edgekit.core.errors import UsageError
from edgekit.report import schema
from edgekit.report.closed_loop import normalized_score
from edgekit.report.reference import conditioned_inputs
from edgekit.report.thresholds import EXIT_THRESHOLD_FAILED, Thresholds
from edgekit.runtime import EdgePolicy

CONTINUOUS, DISCRETE = "ppo-pendulum", "dqn-cartpole"
EPISODES = 2
EXTERNAL = ('src="http', "src='http", 'href="http', "href='http", "<script", "@import", "url(http", "<link", "<iframe")


def _sb3(built):
    import stable_baselines3

    return getattr(stable_baselines3, built.case.algo).load(built.model_path, device="cpu")


def _held_out(bundle_dir):
    with np.load(bundle_dir / "calibration.npz") as data:
        return data["held_out"]


@pytest.fixture(scope="module")
def reports(built_bundle, tmp_path_factory):
    """``reports(name)`` -> (built bundle, report dict, report dir, CLI run), one CLI run per case."""
    cache = {}

    def get(name):
        if name not in cache:
            built = built_bundle(name)
            out = tmp_path_factory.mktemp(f"report-{name}")
            proc = run_cli("report", str(built.bundle_dir), "--model", str(built.model_path),
                           "--episodes", str(EPISODES), "--seed", "5", "-o", str(out))
            assert proc.returncode == 0, proc.stderr
            cache[name] = (built, json.loads((out / "report.json").read_text()), out, proc)
        return cache[name]

    return get


@pytest.mark.parametrize("name", [CONTINUOUS, DISCRETE])
def test_report_json_follows_its_schema(reports, name):
    _, report, _, proc = reports(name)
    assert schema.problems(report) == []
    assert schema._check(report, schema.SCHEMA, "$") == []  # the built-in checker, whether jsonschema is there or not
    assert report["schema"] == schema.SCHEMA_NAME and report["schema_version"] == schema.SCHEMA_VERSION
    assert report["validation"]["observation_set"] == "held_out"
    assert report["reference"]["actions"] == "sb3_predict"
    assert "✓" in proc.stdout or "✗" in proc.stdout
    broken = json.loads(json.dumps(report))
    del broken["closed_loop"]["seeds"]
    broken["layers"]["layers"][0]["rmse"] = "small"
    broken["thresholds"]["checks"][0]["status"] = "fine"
    found = schema._check(broken, schema.SCHEMA, "$")
    assert len(found) == 3 and any("seeds" in p for p in found), found


def test_continuous_numbers_agree_with_sb3_predict(reports):
    built, report, _, _ = reports(CONTINUOUS)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    held_out = _held_out(built.bundle_dir)
    obs = held_out.reshape(-1, *policy.observation_shape)
    expected = _sb3(built).predict(obs, deterministic=True)[0]
    space = policy.manifest.action_space
    share = np.abs(policy.predict(obs) - expected) / (space.high_array() - space.low_array())
    c = report["validation"]["continuous"]
    assert report["validation"]["samples"] == len(held_out)
    assert c["mean_share_of_range"] == pytest.approx(float(share.mean()), rel=1e-6, abs=1e-9)
    assert c["max_share_of_range"] == pytest.approx(float(share.max()), rel=1e-6, abs=1e-9)


def test_discrete_numbers_agree_with_sb3_predict(reports):
    built, report, _, _ = reports(DISCRETE)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _held_out(built.bundle_dir).reshape(-1, *policy.observation_shape)
    agree = policy.predict(obs) == _sb3(built).predict(obs, deterministic=True)[0]
    d = report["validation"]["discrete"]
    assert d["agreement"] == pytest.approx(float(agree.mean()), abs=1e-12)
    assert d["disagreements"] == int((~agree).sum())


@pytest.mark.parametrize("name", [CONTINUOUS, DISCRETE])
def test_closed_loop_replays_with_the_same_seeds(reports, name):
    import gymnasium as gym

    built, report, _, _ = reports(name)
    loop = report["closed_loop"]
    assert loop["seeds"] == [5 + i for i in range(EPISODES)]
    policy, model = EdgePolicy.load(built.bundle_dir, device="cpu"), _sb3(built)
    env = gym.make(built.case.env_id)
    returns = {"int8": [], "float": []}
    for seed in loop["seeds"]:
        for name_, act in (("int8", policy.predict), ("float", lambda o: model.predict(o, deterministic=True)[0])):
            obs, _ = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs))
                total, done = total + float(reward), terminated or truncated
            returns[name_].append(total)
    env.close()
    assert loop["int8"]["returns"] == pytest.approx(returns["int8"])
    assert loop["float"]["returns"] == pytest.approx(returns["float"])
    r_float, r_int8, r_random = np.mean(returns["float"]), np.mean(returns["int8"]), loop["random"]["mean"]
    if abs(r_float - r_random) > 1e-6:
        assert loop["normalized_score"] == pytest.approx((r_int8 - r_random) / (r_float - r_random))


@pytest.mark.parametrize("name", [CONTINUOUS, DISCRETE])
def test_layers_and_coverage_agree_with_the_model_outputs(reports, name):
    import onnxruntime as ort

    built, report, _, _ = reports(name)
    manifest = Manifest.read(built.bundle_dir)
    held_out = _held_out(built.bundle_dir)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    session = ort.InferenceSession(str(built.bundle_dir / "policy.onnx"), providers=["CPUExecutionProvider"])
    x = conditioned_inputs(held_out, manifest.preprocess)
    float_out = np.concatenate([session.run(None, {"obs": row[None]})[0] for row in x])
    rmse = float(np.sqrt(np.mean((policy.predict_outputs(held_out) - float_out) ** 2)))
    step = manifest.models["cpu"].output.quant.scale
    layers = report["layers"]
    assert layers["status"] == "ok", layers["note"]
    last = max(layers["layers"], key=lambda e: e["position"])
    assert last["quantization_step"] == pytest.approx(step)
    # the last int8 tensor is the model output: same drift as measured end to end (kernels differ by a few steps)
    assert abs(last["accumulated_rmse"] - rmse) <= 3 * step
    assert sorted(e["rank"] for e in layers["layers"]) == list(range(1, len(layers["layers"]) + 1))
    assert any(e["op"] == "FULLY_CONNECTED" and e["rmse_in_steps"] is not None for e in layers["layers"])
    features = report["coverage"]["features"]
    assert len(features) == held_out.shape[1]
    for f, column in zip(features, held_out.T):
        assert f["held_out_range"] == pytest.approx([float(column.min()), float(column.max())])
    # input saturation recomputed from the manifest's preprocessing and the int8 input quantization
    q = manifest.models["cpu"].input.quant
    levels = np.rint((held_out - np.asarray(manifest.preprocess.offset)) / np.asarray(manifest.preprocess.scale)
                     / q.scale) + q.zero_point
    saturated = ((levels < -128) | (levels > 127)).mean(axis=0)
    assert [f["saturated_share"] for f in features] == pytest.approx(list(saturated))


@pytest.mark.parametrize("name", [CONTINUOUS, DISCRETE])
def test_html_has_plots_and_no_external_references(reports, name):
    _, _, out, _ = reports(name)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") >= 5  # scatter(s), histogram, returns, layers, coverage
    for needle in EXTERNAL:
        assert needle not in html.lower(), needle
    assert "episode returns" in html and "per-layer error" in html and "error histogram" in html


def test_thresholds_flip_the_exit_code_continuous(built_bundle, tmp_path):
    built = built_bundle(CONTINUOUS)
    args = ["report", str(built.bundle_dir), "--model", str(built.model_path), "--episodes", "0", "-o", str(tmp_path)]
    failed = run_cli(*args, "--max-action-error", "0")
    assert failed.returncode == EXIT_THRESHOLD_FAILED, failed.stderr
    report = json.loads((tmp_path / "report.json").read_text())  # written before failing
    assert report["thresholds"]["passed"] is False and "✗ max action error" in failed.stdout
    passed = run_cli(*args, "--max-action-error", "0.5")
    assert passed.returncode == 0, passed.stderr
    assert json.loads((tmp_path / "report.json").read_text())["thresholds"]["passed"] is True


def test_thresholds_flip_the_exit_code_discrete(built_bundle, tmp_path):
    built = built_bundle(DISCRETE)
    args = ["report", str(built.bundle_dir), "--model", str(built.model_path), "-o", str(tmp_path)]
    failed = run_cli(*args, "--episodes", "1", "--min-score", "1000000")
    assert failed.returncode == EXIT_THRESHOLD_FAILED, failed.stderr
    assert (tmp_path / "report.html").is_file()
    passed = run_cli(*args, "--episodes", "0", "--min-agreement", "0")
    assert passed.returncode == 0, passed.stderr
    check = {c["name"]: c for c in json.loads((tmp_path / "report.json").read_text())["thresholds"]["checks"]}
    assert check["min_agreement"]["enforced"] and check["min_agreement"]["status"] == "pass"
    assert check["max_action_error"]["status"] == "n/a"


def test_without_model_the_onnx_actor_is_the_reference(built_bundle, tmp_path):
    built = built_bundle(CONTINUOUS)
    proc = run_cli("report", str(built.bundle_dir), "--episodes", "1", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert schema.problems(report) == []
    assert report["reference"]["actions"] == "policy_onnx" and report["reference"]["model"] is None
    loop = report["closed_loop"]
    assert loop["float"] is None and loop["normalized_score"] is None and "no --model" in loop["note"]
    assert len(loop["int8"]["returns"]) == 1 and len(loop["random"]["returns"]) == 1
    refused = run_cli("report", str(built.bundle_dir), "--min-score", "0.9", "-o", str(tmp_path))
    assert refused.returncode == 2 and "--min-score needs" in refused.stderr and "fix:" in refused.stderr


def test_default_output_is_the_bundle_which_stays_verifiable(built_bundle, tmp_path):
    built = built_bundle(DISCRETE)
    bundle = tmp_path / "bundle"
    shutil.copytree(built.bundle_dir, bundle)
    build_report = json.loads((bundle / "report.json").read_text())["build"]  # every build writes a full report
    proc = run_cli("report", str(bundle), "--episodes", "0")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((bundle / "report.json").read_text())
    assert report["schema"] == schema.SCHEMA_NAME and report["build"] == build_report
    manifest = Manifest.read(bundle)
    assert "report.html" in verify_all(bundle, manifest)
    assert report["closed_loop"]["status"] == "skipped"


def test_normalized_score_guards_a_zero_denominator():
    assert normalized_score(-100.0, -100.0, -100.0)[0] is None
    assert normalized_score(-150.0, -100.0, -200.0) == (0.5, "")
    score, note = normalized_score(5.0, 10.0, 20.0)
    assert score == pytest.approx(1.5) and "worse than random" in note


def test_thresholds_refuse_percentages():
    with pytest.raises(UsageError):
        Thresholds(max_action_error=2.0).check()
    with pytest.raises(UsageError):
        Thresholds(min_agreement=99.5).check()
    Thresholds(0.02, 0.995, 0.9).check()


def test_conditioned_inputs_match_the_build_stage():
    from edgekit.bundle.manifest import Preprocess
    from edgekit.stages.condition import model_inputs

    obs = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32) * 5
    pre = Preprocess(offset=(0.1, -2.0, 3.0), scale=(1.0, 0.5, 7.0))
    np.testing.assert_array_equal(conditioned_inputs(obs, pre), model_inputs(obs, pre))


def test_every_schema_field_is_documented():
    text = (REPO / "docs" / "report.md").read_text(encoding="utf-8")

    def paths(node, prefix):
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from paths(sub, path)
            yield from paths(sub.get("items", {}), path + "[]")

    missing = [p for p in paths(schema.SCHEMA, "") if f"`{p}`" not in text]
    assert missing == []


@pytest.mark.parametrize("name", [CONTINUOUS, DISCRETE])
def test_the_summary_says_how_close_the_simulation_came_and_why_it_misses(reports, name):
    """The build's verdict on the int8 simulation (met, or which rounding limits it) reaches the report and
    its terminal summary: where a target is out of reach, the report says so and why."""
    from edgekit.report.summary import summary_lines

    _built, report, _out, proc = reports(name)
    verdict = report["bundle"]["conditioning"]["simulated_fidelity"]
    assert "of the targets on calibration observations no step was fitted on" in verdict
    assert ("(met, in simulation)" in verdict) != ("NOT met, most from rounding" in verdict)
    line = f"int8 conditioning: simulated error {verdict}"
    assert line in summary_lines(report) and line in proc.stdout + proc.stderr


def test_the_build_report_names_the_bundle_not_its_staging_directory(built_bundle):
    """A build writes its report while the bundle is still a hidden staging directory; the report must
    name the directory the user gets (it named `.NAME.partial-XXXXXXXX` before)."""
    built = built_bundle("ppo-pendulum")
    report = json.loads((built.bundle_dir / "report.json").read_text())
    assert report["bundle"]["path"] == str(built.bundle_dir.resolve())
    assert ".partial-" not in json.dumps(report)
