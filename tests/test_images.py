"""CnnPolicy on image observations: NHWC int8 input, the env's layout on the device, report, loader.

The end-to-end agreement with SB3's predict for every image case is in test_build_e2e.py; this file
checks what is particular to images on two bundles: an HWC env that SB3 wrapped in VecTransposeImage
(3 channels, normalize_images on) and a channel-first env (1 channel, normalize_images off).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import AGENT_CASES, REPO, run_cli

from edgekit.bundle import Manifest
from edgekit.core.errors import BundleError, InputError, ModelFileError, UnsafePickleError
from edgekit.runtime import EdgePolicy

HWC_CASE = "ppo-image-hwc3"  # edgekit-test/DotHWC3x48-v0: (48, 48, 3) env, SB3 stores (3, 48, 48)
CHW_CASE = "a2c-image-chw1-raw"  # edgekit-test/DotCHW1x48-v0: (1, 48, 48) env, normalize_images=False


def _env_observations(env_id: str, n: int = 30, seed: int = 3) -> np.ndarray:
    import gymnasium as gym

    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    env.close()
    return np.stack(out)


def _hand_run(bundle_dir, manifest: Manifest, obs: np.ndarray) -> np.ndarray:
    """Independent of EdgePolicy: q = pixel - 128 in NHWC, invoke, dequantize the raw outputs."""
    from ai_edge_litert.interpreter import Interpreter

    entry = manifest.models["cpu"]
    interp = Interpreter(model_path=str(bundle_dir / entry.file))
    interp.allocate_tensors()
    image = manifest.preprocess.image
    out = []
    for row in obs:
        hwc = row if image.layout == "HWC" else row.transpose(1, 2, 0)
        q = (hwc.astype(np.int16) - 128).astype(np.int8)[None]
        interp.set_tensor(interp.get_input_details()[0]["index"], q)
        interp.invoke()
        out.append(entry.output.quant.dequantize(interp.get_tensor(interp.get_output_details()[0]["index"]))[0])
    return np.stack(out)


def test_manifest_records_the_env_layout_and_the_model_layout(built_bundle):
    hwc = built_bundle(HWC_CASE)
    m = Manifest.read(hwc.bundle_dir)
    image = m.preprocess.image
    assert (image.layout, image.shape, image.divisor, image.transposed) == ("HWC", (48, 48, 3), 255.0, True)
    assert m.observation_space.shape == (3, 48, 48)  # the space as SB3 stores it (transposed)
    raw = json.loads((hwc.bundle_dir / "manifest.json").read_text())
    assert raw["preprocess"]["image"]["model_layout"] == "NHWC" and raw["preprocess"]["offset"] == []
    assert raw["observation_space"]["low"] == 0.0 and raw["observation_space"]["high"] == 255.0  # not per pixel
    assert "image_input" in m.conditioning and "output_range" in m.conditioning
    assert "input_scaling" not in m.conditioning and "finetune" not in m.conditioning
    chw = Manifest.read(built_bundle(CHW_CASE).bundle_dir).preprocess.image
    assert (chw.layout, chw.shape, chw.divisor, chw.transposed) == ("CHW", (1, 48, 48), 1.0, False)


@pytest.mark.parametrize("name", [HWC_CASE, CHW_CASE])
def test_int8_model_takes_nhwc_images_with_no_transpose(built_bundle, name):
    from edgekit.edgetpu.check import check_model
    from edgekit.host.tflite_inspect import inspect_int8_model

    built = built_bundle(name)
    model = built.bundle_dir / "model_int8.tflite"
    info = inspect_int8_model(model)
    image = Manifest.read(built.bundle_dir).preprocess.image
    assert info.input.shape == (1, *image.hwc)
    assert info.op_names[:3] == ("CONV_2D",) * 3 and "TRANSPOSE" not in info.op_names
    assert set(info.op_names) == {"CONV_2D", "RESHAPE", "FULLY_CONNECTED"}
    assert info.input.quant.zero_point == -128 and info.input.quant.scale == pytest.approx(1 / image.divisor)
    report = check_model(model)
    assert report.fully_mappable, report.reasons
    proc = run_cli("check", str(built.bundle_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", [HWC_CASE, CHW_CASE])
def test_runtime_takes_images_exactly_as_the_env_returns_them(built_bundle, name):
    built = built_bundle(name)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _env_observations(built.case.env_id)
    assert policy.observation_shape == obs.shape[1:] and policy.fast_path
    raw = _hand_run(built.bundle_dir, policy.manifest, obs)
    np.testing.assert_array_equal(policy.predict_outputs(obs), raw)
    batch = policy.predict(obs)
    single = np.stack([policy.predict(row) for row in obs])  # the fast per-step path
    np.testing.assert_array_equal(batch, single)
    np.testing.assert_array_equal(batch, policy._post(raw))
    np.testing.assert_array_equal(policy.quantize_observations(obs[:2])[0],
                                  (policy._image.image.nhwc(obs[:1])[0].astype(np.int16) - 128))
    assert policy.saturated_features(obs) == 0


def test_wrong_image_shape_or_dtype_is_a_one_line_input_error(built_bundle):
    policy = EdgePolicy.load(built_bundle(HWC_CASE).bundle_dir, device="cpu")
    obs = _env_observations(AGENT_CASES[HWC_CASE].env_id, n=1)[0]
    expected = policy.predict(obs)
    assert policy.predict(obs.astype(np.int64)) == expected  # whole numbers 0..255 (e.g. from JSON) are pixels
    assert policy.predict(obs.tolist()) == expected
    bad = {
        "does not fit": obs.transpose(2, 0, 1),  # channel-first for an HWC env: refused, never guessed
        "uint8 pixels": obs.astype(np.float32) + 0.5,
        "whole numbers 0..255": np.full(obs.shape, 300),
        "got dtype <U1": [["a"]],
        "not numeric": [[1], [1, 2]],
    }
    for needle, value in bad.items():
        with pytest.raises(InputError, match=needle) as caught:
            policy.predict(value)
        assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="does not fit"):
        policy.predict(obs[None, None])


def test_server_verify_and_bench_take_image_bundles(built_bundle):
    built = built_bundle(HWC_CASE)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    obs = _env_observations(built.case.env_id, n=2)
    lines = "".join(json.dumps({"id": i, "obs": o.tolist()}) + "\n" for i, o in enumerate(obs))
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(built.bundle_dir), "--serve", "stdio",
                           "--device", "cpu"], input=lines, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["action"] for r in replies] == [int(policy.predict(o)) for o in obs]
    verify = run_cli("verify", str(built.bundle_dir), "--device", "cpu")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    bench = run_cli("bench", str(built.bundle_dir), "--device", "cpu", "--iterations", "50", "--json")
    assert bench.returncode == 0, bench.stderr


def test_calibration_sets_hold_uint8_images_in_the_env_layout(built_bundle):
    built = built_bundle(HWC_CASE)
    with np.load(built.bundle_dir / "calibration.npz") as data:
        assert data["calibration"].dtype == np.uint8 and data["calibration"].shape == (600, 48 * 48 * 3)
    with np.load(built.bundle_dir / "verify.npz") as data:
        assert data["observations"].dtype == np.uint8
    from edgekit.stages.rollouts import RolloutRecipe

    assert RolloutRecipe().steps(image=True) == (500, 500) and RolloutRecipe().steps(image=False) == (2000, 2000)
    assert RolloutRecipe(calibration_steps=300).steps(image=True) == (300, 500)


@pytest.mark.parametrize("name", [HWC_CASE, CHW_CASE])
def test_report_summarises_pixels_per_channel_and_measures_conv_layers(built_bundle, name):
    built = built_bundle(name)
    report = json.loads((built.bundle_dir / "report.json").read_text())
    cover = report["coverage"]
    assert cover["features"] == [] and cover["saturated_share"] == 0.0
    image = cover["image"]
    assert len(image["channels"]) == Manifest.read(built.bundle_dir).preprocess.image.hwc[-1]
    assert all(0 <= c["calibration_range"][0] <= c["calibration_range"][1] <= 255 for c in image["channels"])
    layers = report["layers"]
    assert layers["status"] == "ok", layers["note"]
    convs = [e for e in layers["layers"] if e["op"] == "CONV_2D"]
    assert len(convs) == 3 and all(e["rmse_in_steps"] is not None and e["rmse_in_steps"] < 2 for e in convs)
    html = (built.bundle_dir / "report.html").read_text()
    assert "held-out pixels" in html and "CONV_2D" in html


def test_mlp_policy_on_images_is_refused_with_the_reason():
    from edgekit.core.errors import UnsupportedModelError
    from edgekit.host.support_matrix import Combination, check_supported

    with pytest.raises(UnsupportedModelError, match="CnnPolicy"):
        check_supported(Combination("PPO", "MlpPolicy", "image", "discrete"))


def test_nature_cnn_may_be_named_in_policy_kwargs_but_not_called(trained_model, tmp_path):
    from stable_baselines3.common.torch_layers import NatureCNN
    from test_safe_load import _Calls, _pickled, _rewrite

    from edgekit.host.loading import load_agent

    path = trained_model(HWC_CASE)
    original = load_agent(path)
    named = _rewrite(path, tmp_path / "named.zip", data_fields={"policy_kwargs": _pickled(
        {"features_extractor_class": NatureCNN, "features_extractor_kwargs": {"features_dim": 32}})})
    agent = load_agent(named)
    obs = _env_observations(AGENT_CASES[HWC_CASE].env_id, n=8)
    np.testing.assert_array_equal(agent.model.predict(obs)[0], original.model.predict(obs)[0])
    called = _rewrite(path, tmp_path / "called.zip", data_fields={"policy_kwargs": _pickled(
        {"features_extractor_class": _Calls(NatureCNN, (None,))})})
    with pytest.raises(UnsafePickleError, match="lets a pickle name but not call"):
        load_agent(called)
    huge = _rewrite(path, tmp_path / "huge.zip", data_fields={"policy_kwargs": _pickled(
        {"features_extractor_kwargs": {"features_dim": 10**7}})})
    with pytest.raises(ModelFileError, match="larger network than policy.pth holds"):
        load_agent(huge)


def test_image_manifests_are_validated(built_bundle):
    raw = json.loads((built_bundle(HWC_CASE).bundle_dir / "manifest.json").read_text())
    assert Manifest.from_dict(raw).preprocess.image is not None

    def broken(change) -> dict:
        data = json.loads(json.dumps(raw))
        change(data)
        return data

    cases = {
        "layout": lambda d: d["preprocess"]["image"].update(layout="NCHW"),
        "shape": lambda d: d["preprocess"]["image"].update(shape=[48, 48, 4]),
        "divisor": lambda d: d["preprocess"]["image"].update(divisor=2.0),
        "split": lambda d: d["preprocess"].update(split=254),
        "offset": lambda d: d["preprocess"].update(offset=[0.0]),
        "bound": lambda d: d["observation_space"].update(shape=[2**30, 2**30, 3]),
        "transposed": lambda d: d["preprocess"]["image"].update(transposed="yes"),
    }
    for what, change in cases.items():
        with pytest.raises(BundleError, match="manifest"):
            Manifest.from_dict(broken(change))
            pytest.fail(f"a manifest with a bad {what} was accepted")
