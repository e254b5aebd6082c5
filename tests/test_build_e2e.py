"""End to end on real components: train -> build (onnx2tf, TFLite) -> runtime vs SB3 predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import AGENT_CASES

from edgekit.bundle import Manifest, verify_all
from edgekit.quant import QuantParams
from edgekit.runtime import EdgePolicy
from edgekit.tflite_inspect import inspect_int8_model

CASES = sorted(AGENT_CASES)

# Stated tolerances for tiny, barely trained agents (the fidelity work and
# its targets live in the report; these guard against gross breakage):
# continuous actions within 5 % of the range on average and 25 % at worst vs
# SB3's float predict; discrete argmax agreeing on >= 90 % of decisive states.
MEAN_SHARE_TOL = 0.05
MAX_SHARE_TOL = 0.25
DECISIVE_AGREEMENT_MIN = 0.90


def _sb3_model(case, path):
    import stable_baselines3

    return getattr(stable_baselines3, case.algo).load(path, device="cpu")


def _held_out(bundle_dir, shape):
    with np.load(bundle_dir / "calibration.npz") as data:
        return data["held_out"].reshape(-1, *shape)


@pytest.mark.parametrize("name", CASES)
def test_bundle_is_complete_and_fully_int8(built_bundle, name):
    built = built_bundle(name)
    manifest = Manifest.read(built.bundle_dir)
    assert sorted(verify_all(built.bundle_dir, manifest)) == sorted(
        ["calibration.npz", "model_int8.tflite", "policy.onnx", "report.html", "report.json", "verify.npz"]
    )
    assert manifest.algorithm == built.case.algo
    assert manifest.env_id == built.case.env_id
    info = inspect_int8_model(built.bundle_dir / "model_int8.tflite")
    info.require_fully_int8()
    assert info.problems == []
    assert set(info.op_names) <= {"FULLY_CONNECTED", "TANH", "RELU", "MUL", "RESHAPE", "STRIDED_SLICE", "ADD"}
    # with a split input, a coarse and a fine int8 part per observation feature
    if built.case.conditioning.get("force_split"):
        assert manifest.preprocess.split == 16
    assert info.input.shape == (1, manifest.preprocess.input_factor * manifest.observation_space.size)
    cpu = manifest.models["cpu"]
    assert cpu.input.quant == info.input.quant and cpu.output.quant == info.output.quant


@pytest.mark.parametrize("name", CASES)
def test_runtime_predict_matches_sb3_predict(built_bundle, name):
    built = built_bundle(name)
    model = _sb3_model(built.case, built.model_path)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _held_out(built.bundle_dir, policy.observation_shape)
    expected = model.predict(obs, deterministic=True)[0]
    actual = policy.predict(obs)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    space = policy.manifest.action_space
    if space.kind == "box":
        span = space.high_array() - space.low_array()
        share = np.abs(actual - expected) / span
        assert share.mean() <= MEAN_SHARE_TOL, share.mean()
        assert share.max() <= MAX_SHARE_TOL, share.max()
        assert np.all(actual >= space.low_array()) and np.all(actual <= space.high_array())
    else:
        report = json.loads((built.bundle_dir / "report.json").read_text())
        discrete = report["validation"]["discrete"]
        decisive = discrete["decisive_agreement"]
        assert decisive is None or decisive >= DECISIVE_AGREEMENT_MIN, discrete
        # the report's agreement is the same figure computed here against SB3's own predict
        assert abs(float(np.mean(actual == expected)) - discrete["agreement"]) < 1e-9


@pytest.mark.parametrize("name", ["ppo-pendulum", "sac-pendulum", "dqn-cartpole"])
def test_runtime_equals_a_hand_run_of_the_int8_model(built_bundle, name):
    """Independent of EdgePolicy: quantize by hand from the manifest, invoke, dequantize, post-process."""
    from ai_edge_litert.interpreter import Interpreter

    built = built_bundle(name)
    manifest = Manifest.read(built.bundle_dir)
    entry = manifest.models["cpu"]
    interp = Interpreter(model_path=str(built.bundle_dir / entry.file))
    interp.allocate_tensors()
    qin = QuantParams(entry.input.quant.scale, entry.input.quant.zero_point)
    qout = QuantParams(entry.output.quant.scale, entry.output.quant.zero_point)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _held_out(built.bundle_dir, policy.observation_shape)[:200]
    for row in obs:
        pre = (row.reshape(-1) - np.array(manifest.preprocess.offset)) / np.array(manifest.preprocess.scale)
        m = manifest.preprocess.split
        if m:  # coarse part, then the coarse part's rounding residual magnified m times
            u = pre / qin.scale
            coarse = np.clip(np.rint(u), -128 - qin.zero_point, 127 - qin.zero_point)
            fine = np.rint(m * np.clip(u - coarse, -0.5, 0.5))
            q = np.concatenate([coarse, fine]) + qin.zero_point
            q = np.clip(q, -128, 127).astype(np.int8)
        else:
            q = qin.quantize(pre)
        interp.set_tensor(interp.get_input_details()[0]["index"], q[None])
        interp.invoke()
        out = qout.dequantize(interp.get_tensor(interp.get_output_details()[0]["index"]))[0]
        space = manifest.action_space
        if manifest.postprocess == "argmax":
            expected = np.argmax(out)
        elif manifest.postprocess == "clip":
            expected = np.clip(out, space.low_array(), space.high_array())
        else:
            low, high = space.low_array(), space.high_array()
            expected = low + (np.clip(out, -1, 1) + 1.0) * 0.5 * (high - low)
        np.testing.assert_allclose(policy.predict(row), expected, rtol=0, atol=1e-6)


def test_build_report_agrees_with_independent_error(built_bundle):
    built = built_bundle("ppo-pendulum")
    model = _sb3_model(built.case, built.model_path)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _held_out(built.bundle_dir, policy.observation_shape)
    err = np.abs(policy.predict(obs) - model.predict(obs, deterministic=True)[0]) / 4.0  # Pendulum range is 4
    report = json.loads((built.bundle_dir / "report.json").read_text())
    cont = report["validation"]["continuous"]
    assert cont["mean_share_of_range"] == pytest.approx(err.mean(), rel=1e-4, abs=1e-7)
    assert cont["max_share_of_range"] == pytest.approx(err.max(), rel=1e-4, abs=1e-7)


def test_manifest_records_spaces_postprocess_and_versions(built_bundle):
    m = Manifest.read(built_bundle("sac-pendulum").bundle_dir)
    assert m.output == "squashed_actions" and m.postprocess == "unscale"
    assert m.action_space.low == (-2.0,) and m.action_space.high == (2.0,)
    assert m.observation_space.shape == (3,)
    assert {"edgekit", "stable-baselines3", "torch", "onnx2tf", "tensorflow"} <= set(m.versions)
    assert m.source["algorithm"] == "SAC" and len(m.source["sha256"]) == 64
    assert m.calibration["calibration_steps"] == 600 and m.calibration["held_out_steps"] == 600
    ppo = Manifest.read(built_bundle("ppo-pendulum").bundle_dir)
    # SB3 clips PPO's Gaussian mean; the conditioned graph does it in-graph, normalized to [-1, 1]
    assert ppo.output == "actions" and ppo.postprocess == "unscale" and "output_range" in ppo.conditioning
    assert Manifest.read(built_bundle("dqn-cartpole").bundle_dir).output == "q_values"
    assert Manifest.read(built_bundle("ppo-cartpole").bundle_dir).output == "logits"


def test_calibration_and_held_out_sets_are_disjoint_rollouts(built_bundle):
    with np.load(built_bundle("ppo-pendulum").bundle_dir / "calibration.npz") as data:
        calib, held = data["calibration"], data["held_out"]
    assert calib.shape == (600, 3) and held.shape == (600, 3)
    assert not np.any(np.all(np.isclose(calib[:, None, :], held[None, :, :]), axis=-1))
