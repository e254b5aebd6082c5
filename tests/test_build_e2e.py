"""End to end on real components: train -> build (onnx2tf, TFLite) -> runtime vs SB3 predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import AGENT_CASES, algorithm_class

from edgekit.bundle import Manifest, verify_all
from edgekit.core.quant import QuantParams
from edgekit.host.tflite_inspect import inspect_int8_model
from edgekit.runtime import EdgePolicy

CASES = sorted(AGENT_CASES)

# Stated tolerances for tiny, barely trained agents (the fidelity work and
# its targets live in the report; these guard against gross breakage):
# continuous actions within 5 % of the range on average and 25 % at worst vs
# SB3's float predict; discrete argmax agreeing on >= 90 % of decisive states.
MEAN_SHARE_TOL = 0.05
MAX_SHARE_TOL = 0.25
DECISIVE_AGREEMENT_MIN = 0.90

# The TFLite ops an activation adds (edgekit.host.activations rewrites LeakyReLU as PReLU, ELU as relu + exp).
ACTIVATION_OPS = {"Hardswish": ("HARD_SWISH",), "ELU": ("MINIMUM", "EXP", "SUB"), "LeakyReLU": ("PRELU",),
                  "LogSigmoid": ("LOGISTIC", "LOG")}


def _sb3_model(case, path):
    return algorithm_class(case.algo).load(path, device="cpu")


def _held_out(bundle_dir, policy):
    """The held-out observations as the env returned them (the bundle stores their flat features)."""
    with np.load(bundle_dir / "calibration.npz") as data:
        return policy.observations_of(data["held_out"])


def _rows(batch, count):
    if isinstance(batch, dict):
        return [{k: v[i] for k, v in batch.items()} for i in range(count)]
    return list(batch[:count])


def _features_by_hand(space, obs):
    """SB3's preprocess_obs + flatten / CombinedExtractor for one observation, written out independently."""
    if space.kind == "dict":
        return np.concatenate([_features_by_hand(sub, obs[key]) for key, sub in space.spaces])
    if space.kind == "discrete":
        return np.eye(space.n)[int(obs)]
    if space.kind == "multi_discrete":
        return np.concatenate([np.eye(n)[int(v)] for n, v in zip(space.nvec, np.asarray(obs))])
    return np.asarray(obs, dtype=np.float64).reshape(-1)


def _postprocess_by_hand(manifest, out):
    space = manifest.action_space
    if manifest.postprocess == "argmax":
        return np.argmax(out)
    if manifest.postprocess == "multi_argmax":
        bounds = np.cumsum([0, *space.nvec])
        return np.array([np.argmax(out[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
    if manifest.postprocess == "threshold":  # BernoulliDistribution.mode(): round(sigmoid(logit))
        return np.round(1.0 / (1.0 + np.exp(-out.astype(np.float64))))
    if manifest.postprocess == "clip":
        return np.clip(out, space.low_array(), space.high_array())
    low, high = space.low_array(), space.high_array()
    return low + (np.clip(out, -1, 1) + 1.0) * 0.5 * (high - low)


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
    activation = built.case.kwargs.get("policy_kwargs", {}).get("activation_fn", "")
    assert set(info.op_names) <= {"FULLY_CONNECTED", "TANH", "RELU", "MUL", "RESHAPE", "STRIDED_SLICE", "ADD",
                                  "CONV_2D", "MEAN", *ACTIVATION_OPS.get(activation, ())}
    # with a split input, a coarse and a fine int8 part per observation feature
    if built.case.conditioning.get("force_split"):
        assert manifest.preprocess.split == 16
    image = manifest.preprocess.image
    if image is not None:  # NHWC int8 images straight into the first convolution, q = pixel - 128
        assert info.input.shape == (1, *image.hwc) and info.op_names[0] == "CONV_2D"
        assert info.input.quant.zero_point == -128 and info.input.quant.scale == pytest.approx(1 / image.divisor)
    else:
        assert info.input.shape == (1, manifest.preprocess.input_factor * manifest.observation_space.features)
    cpu = manifest.models["cpu"]
    assert cpu.input.quant == info.input.quant and cpu.output.quant == info.output.quant


@pytest.mark.parametrize("name", CASES)
def test_runtime_predict_matches_sb3_predict(built_bundle, name):
    built = built_bundle(name)
    model = _sb3_model(built.case, built.model_path)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _held_out(built.bundle_dir, policy)
    expected = model.predict(obs, deterministic=True)[0]
    actual = policy.predict(obs)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    for row, want in zip(_rows(obs, 20), actual):  # one at a time (the fast path) as in a batch
        one = policy.predict(row)
        assert one.shape == want.shape and one.dtype == want.dtype and np.array_equal(one, want)
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
        # (per decision: each MultiDiscrete branch, each MultiBinary bit)
        assert abs(float(np.mean(actual == expected)) - discrete["agreement"]) < 1e-9
        if space.kind != "discrete":
            whole = np.all((actual == expected).reshape(len(actual), -1), axis=1).mean()
            assert abs(whole - discrete["action_agreement"]) < 1e-9
            assert len(discrete["branches"]) == expected.reshape(len(actual), -1).shape[1]


HAND_RUN_CASES = ["ppo-pendulum", "sac-pendulum", "dqn-cartpole", "dqn-cartpole-split", "ppo-discrete-multidiscrete",
                  "a2c-multidiscrete-multibinary", "ppo-dict-multibinary", "sac-dict-box", "td3-multibinary-box",
                  "ppo-intbox-discrete", "dqn-dict-discrete-split"]


@pytest.mark.parametrize("name", HAND_RUN_CASES)
def test_runtime_equals_a_hand_run_of_the_int8_model(built_bundle, name):
    """Independent of EdgePolicy: one-hot by hand, quantize from the manifest, invoke, dequantize, post-process."""
    from ai_edge_litert.interpreter import Interpreter

    built = built_bundle(name)
    manifest = Manifest.read(built.bundle_dir)
    entry = manifest.models["cpu"]
    interp = Interpreter(model_path=str(built.bundle_dir / entry.file))
    interp.allocate_tensors()
    qin = QuantParams(entry.input.quant.scale, entry.input.quant.zero_point)
    qout = QuantParams(entry.output.quant.scale, entry.output.quant.zero_point)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    with np.load(built.bundle_dir / "calibration.npz") as data:
        stored = data["held_out"][:200]
    for features, row in zip(stored, _rows(policy.observations_of(stored), 200)):
        flat = _features_by_hand(manifest.observation_space, row)
        np.testing.assert_array_equal(flat, features)  # the bundle stores exactly SB3's features
        pre = (flat - np.array(manifest.preprocess.offset)) / np.array(manifest.preprocess.scale)
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
        np.testing.assert_allclose(policy.predict(row), _postprocess_by_hand(manifest, out), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["ppo-discrete-box", "dqn-multidiscrete-discrete", "a2c-multibinary-discrete",
                                  "ppo-dict-multidiscrete", "dqn-dict-discrete-split"])
def test_one_hot_and_binary_inputs_take_exact_int8_levels(built_bundle, name):
    """The int8 input carries 0 and 1 of every one-hot / MultiBinary feature without rounding error: what the
    first layer sees (coarse level, plus the fine part / m with a split input) is exactly the preprocessed value."""
    built = built_bundle(name)
    manifest = Manifest.read(built.bundle_dir)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    binary = np.flatnonzero(policy.encoder.binary)
    assert binary.size and "binary_inputs" in manifest.conditioning
    with np.load(built.bundle_dir / "calibration.npz") as data:
        held = data["held_out"]
    quant, pre = manifest.models["cpu"].input.quant, manifest.preprocess
    q = policy.quantize_observations(policy.observations_of(held)).astype(np.float64) - quant.zero_point
    n, m = held.shape[1], pre.split
    levels = q[:, :n] + (q[:, n:] / m if m else 0.0)
    expected = (held - np.asarray(pre.offset)) / np.asarray(pre.scale) / quant.scale
    np.testing.assert_allclose(levels[:, binary], expected[:, binary], rtol=0, atol=1e-3)
    assert len(np.unique(levels[:, binary])) == 2  # 0 and 1, two levels
    if not m:
        assert np.array_equal(levels[:, binary], np.rint(levels[:, binary]))
    report = json.loads((built.bundle_dir / "report.json").read_text())
    assert report["coverage"]["discrete_inputs"]["exact_levels"] is True


def test_build_report_agrees_with_independent_error(built_bundle):
    built = built_bundle("ppo-pendulum")
    model = _sb3_model(built.case, built.model_path)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _held_out(built.bundle_dir, policy)
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
