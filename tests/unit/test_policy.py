"""EdgePolicy on the committed int8 bundles: the runtime's arithmetic written out by hand, SB3's shapes and
dtypes, the host's recorded outputs, and refusals of bad input and damaged bundles."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from edgekit.bundle import Manifest
from edgekit.core.errors import BundleError, InputError, UsageError
from edgekit.runtime import EdgePolicy, EdgeTPUFallbackWarning
from edgekit.runtime.interpreters import DeviceRequest
from edgekit.runtime.verify import verify_bundle


def _interpreter(path):
    """A plain TFLite interpreter from whichever package the device extra installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def _held_out(bundle):
    with np.load(bundle / "calibration.npz") as data:
        return data["held_out"]


def _by_hand(bundle, obs):
    """Actions for a batch of Box observations from the manifest's numbers alone: preprocess, quantize
    (round half to even, saturate), invoke, dequantize, post-process as SB3's predict does."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = manifest["models"]["cpu"]
    pre, qin, qout = manifest["preprocess"], model["input"], model["output"]
    x = (obs.astype(np.float64) - np.asarray(pre["offset"])) / np.asarray(pre["scale"])
    q = np.clip(np.rint(x / qin["scale"] + qin["zero_point"]), -128, 127).astype(np.int8)
    interpreter = _interpreter(bundle / model["file"])
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    raw = []
    for row in q:
        interpreter.set_tensor(inp["index"], row.reshape(inp["shape"]))
        interpreter.invoke()
        raw.append(interpreter.get_tensor(out["index"])[0].copy())
    outputs = (np.asarray(raw, dtype=np.float32) - qout["zero_point"]) * np.float32(qout["scale"])
    space = manifest["action_space"]
    if manifest["postprocess"] == "argmax":
        return np.argmax(outputs, axis=1) + space["start"]
    assert manifest["postprocess"] == "unscale", manifest["postprocess"]
    low, high = np.asarray(space["low"], np.float32), np.asarray(space["high"], np.float32)
    return low + (np.clip(outputs, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


@pytest.mark.parametrize("name", ["ppo-pendulum", "ppo-cartpole"])
def test_predict_is_the_manifests_arithmetic(bundle_dir, name):
    bundle = bundle_dir(name)
    policy = EdgePolicy.load(bundle, device="cpu")
    obs = _held_out(bundle)
    expected = _by_hand(bundle, obs)
    actions = policy.predict(obs)
    if policy.manifest.postprocess == "argmax":
        np.testing.assert_array_equal(actions, expected)
        assert len(set(actions.tolist())) == 2, "a policy that always picks one action proves little"
    else:
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-6)
        assert np.ptp(actions) > 0.05, "a policy with one action proves little"


@pytest.mark.parametrize("name", ["ppo-pendulum", "ppo-cartpole"])
def test_outputs_equal_the_build_hosts_within_its_kernel_spread(bundle_dir, name):
    result = verify_bundle(bundle_dir(name), device="cpu")
    assert result.passed, result.to_dict()
    assert result.files_checked == 6 and result.samples == 100
    assert result.max_steps <= result.tolerance_steps and result.unexplained_mismatches == 0


def test_box_actions_are_shaped_and_typed_like_sb3(bundle_dir):
    bundle = bundle_dir("ppo-pendulum")
    policy = EdgePolicy.load(bundle, device="cpu")
    obs = _held_out(bundle)[:16]
    one, many = policy.predict(obs[0]), policy.predict(obs)
    assert isinstance(one, np.ndarray) and one.shape == (1,) and one.dtype == np.float32
    assert many.shape == (16, 1) and many.dtype == np.float32
    np.testing.assert_array_equal(np.stack([policy.predict(o) for o in obs]), many)
    np.testing.assert_array_equal(policy.predict(obs[0].tolist()), one)  # plain lists, as JSON gives them
    np.testing.assert_array_equal(policy.predict(obs[:1]), one[None])  # a batch of one stays a batch
    low, high = policy.manifest.action_space.low_array(), policy.manifest.action_space.high_array()
    assert np.all(many >= low) and np.all(many <= high)


def test_discrete_actions_are_shaped_and_typed_like_sb3(bundle_dir):
    bundle = bundle_dir("ppo-cartpole")
    policy = EdgePolicy.load(bundle, device="cpu")
    obs = _held_out(bundle)[:16]
    one, many = policy.predict(obs[0]), policy.predict(obs)
    assert one.shape == () and one.dtype == np.int64  # SB3: array(1) for one observation
    assert many.shape == (16,) and many.dtype == np.int64
    np.testing.assert_array_equal(np.stack([policy.predict(o) for o in obs]), many)


def test_outputs_and_int8_inputs_agree_with_predict(bundle_dir):
    bundle = bundle_dir("ppo-cartpole")
    policy = EdgePolicy.load(bundle, device="cpu")
    obs = _held_out(bundle)[:8]
    q = policy.quantize_observations(obs)
    assert q.dtype == np.int8 and q.shape == (8, 4)
    entry = policy.manifest.models["cpu"]
    outputs = policy.predict_outputs(obs)
    by_int8 = np.stack([entry.output.quant.dequantize(policy.invoke_int8(row)) for row in q])
    np.testing.assert_array_equal(outputs, by_int8)
    np.testing.assert_array_equal(np.argmax(outputs, axis=1), policy.predict(obs))


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[1.0, 2.0, 3.0, 4.0]], [float("nan"), 0.0, 0.0],
                                 [float("inf"), 0.0, 0.0], "abc", [[1.0], [2.0, 3.0]], {"a": 1}, None])
def test_bad_observations_are_input_errors(bundle_dir, bad):
    policy = EdgePolicy.load(bundle_dir("ppo-pendulum"), device="cpu")
    with pytest.raises(InputError):
        policy.predict(bad)


def test_far_out_of_range_observations_saturate_and_are_counted(bundle_dir):
    policy = EdgePolicy.load(bundle_dir("ppo-pendulum"), device="cpu")
    inside, outside = [0.5, 0.5, 1.0], [1e6, -1e6, 1.0]
    assert policy.saturated_features(inside) == 0 and policy.saturated_features(outside) == 2
    q = policy.quantize_observations(outside)[0]
    assert q[0] == 127 and q[1] == -128
    assert np.isfinite(policy.predict(outside)).all()


def test_auto_without_an_edgetpu_model_warns_once_and_runs_on_the_cpu(bundle_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = EdgePolicy.load(bundle_dir("ppo-pendulum"), device="auto")
    fallbacks = [w for w in caught if issubclass(w.category, EdgeTPUFallbackWarning)]
    assert len(fallbacks) == 1 and "no Edge TPU model" in str(fallbacks[0].message)
    assert policy.device == "cpu" and "PPO Pendulum-v1" in repr(policy)


@pytest.mark.parametrize(("text", "kind", "index"), [("auto", "auto", None), ("CPU", "cpu", None),
                                                     ("usb", "usb", None), ("usb:1", "usb", 1), ("pci:0", "pci", 0)])
def test_device_strings(text, kind, index):
    request = DeviceRequest.parse(text)
    assert (request.kind, request.index) == (kind, index)


@pytest.mark.parametrize("text", ["gpu", "cpu:0", "usb:x", ""])
def test_unknown_devices_are_usage_errors(text):
    with pytest.raises(UsageError, match="unknown device"):
        DeviceRequest.parse(text)


def test_a_changed_model_byte_is_refused(bundle_copy):
    bundle = bundle_copy("ppo-pendulum")
    model = bundle / "model_int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256|changed|hash"):
        EdgePolicy.load(bundle, device="cpu")


def test_a_truncated_model_is_refused(bundle_copy):
    bundle = bundle_copy("ppo-cartpole")
    model = bundle / "model_int8.tflite"
    model.write_bytes(model.read_bytes()[:200])
    with pytest.raises(BundleError):
        EdgePolicy.load(bundle, device="cpu")


def test_an_unknown_format_version_is_refused_with_the_fix(bundle_copy):
    bundle = bundle_copy("ppo-pendulum")
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="format version 99") as caught:
        EdgePolicy.load(bundle, device="cpu")
    assert "rebuild" in caught.value.hint


def test_a_directory_without_a_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        EdgePolicy.load(tmp_path, device="cpu")
    with pytest.raises(BundleError, match="not a directory"):
        EdgePolicy.load(tmp_path / "missing", device="cpu")


def test_the_manifest_is_what_the_policy_runs(bundle_dir):
    bundle = bundle_dir("ppo-cartpole")
    manifest = Manifest.read(bundle)
    policy = EdgePolicy.load(bundle, device="cpu")
    assert policy.manifest == manifest and policy.model_file == manifest.models["cpu"].file
    assert manifest.postprocess == "argmax" and manifest.action_space.n == 2
