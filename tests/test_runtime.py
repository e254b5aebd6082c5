"""The device runtime on real int8 bundles: shapes, errors, devices, integrity."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import REPO

from edgekit.bundle import Manifest, sha256_file
from edgekit.core.errors import BundleError, DeviceError, InputError, MissingDependencyError, UsageError
from edgekit.runtime import EdgePolicy, EdgeTPUFallbackWarning
from edgekit.runtime.interpreters import DeviceRequest, edgetpu_library_name, find_backend


def _sb3(built):
    import stable_baselines3

    return getattr(stable_baselines3, built.case.algo).load(built.model_path, device="cpu")


@pytest.mark.parametrize("name", ["ppo-pendulum", "dqn-cartpole", "sac-pendulum"])
def test_single_and_batch_shaped_like_sb3(built_bundle, name):
    built = built_bundle(name)
    model = _sb3(built)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    with np.load(built.bundle_dir / "calibration.npz") as data:
        obs = data["held_out"][:16]
    one_sb3, one = model.predict(obs[0], deterministic=True)[0], policy.predict(obs[0])
    assert one.shape == one_sb3.shape and one.dtype == one_sb3.dtype and isinstance(one, np.ndarray)
    many_sb3, many = model.predict(obs, deterministic=True)[0], policy.predict(obs)
    assert many.shape == many_sb3.shape and many.dtype == many_sb3.dtype
    np.testing.assert_array_equal(np.stack([policy.predict(o) for o in obs]), many)
    assert policy.predict(obs[0].tolist()).shape == one.shape  # plain lists work too


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[1.0, 2.0, 3.0, 4.0]], [float("nan"), 0.0, 0.0],
                                 [float("inf"), 0.0, 0.0], "abc", [[1.0], [2.0, 3.0]], {"a": 1}])
def test_bad_observations_raise_input_error(built_bundle, bad):
    policy = EdgePolicy.load(built_bundle("ppo-pendulum").bundle_dir, device="cpu")
    with pytest.raises(InputError):
        policy.predict(bad)


def test_auto_without_edgetpu_model_warns_once_and_uses_cpu(built_bundle):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = EdgePolicy.load(built_bundle("ppo-pendulum").bundle_dir, device="auto")
    fallbacks = [w for w in caught if issubclass(w.category, EdgeTPUFallbackWarning)]
    assert len(fallbacks) == 1 and "no Edge TPU model" in str(fallbacks[0].message)
    assert policy.device == "cpu"


def test_explicit_tpu_without_edgetpu_model_is_an_error(built_bundle):
    with pytest.raises(DeviceError, match="no Edge TPU model"):
        EdgePolicy.load(built_bundle("ppo-pendulum").bundle_dir, device="usb")


@pytest.fixture()
def bundle_with_edgetpu_entry(built_bundle, tmp_path):
    """A copy of a bundle whose manifest also lists an Edge TPU model.

    STAND-IN: no compiler exists here, so the 'edgetpu' file is a plain copy of
    the CPU int8 model. It is never run on a TPU and claims no compilation; it
    only lets the runtime reach the real libedgetpu loading code, which then
    fails for real because libedgetpu is not installed on this machine.
    """
    src = built_bundle("ppo-pendulum").bundle_dir
    dst = tmp_path / "bundle"
    shutil.copytree(src, dst)
    shutil.copy(dst / "model_int8.tflite", dst / "model_int8_edgetpu.tflite")
    data = json.loads((dst / "manifest.json").read_text())
    data["models"]["edgetpu"] = dict(data["models"]["cpu"], file="model_int8_edgetpu.tflite")
    data["files"]["model_int8_edgetpu.tflite"] = sha256_file(dst / "model_int8_edgetpu.tflite")
    (dst / "manifest.json").write_text(json.dumps(data))
    return dst


def _has_libedgetpu() -> bool:
    import ctypes

    try:
        ctypes.CDLL(edgetpu_library_name())
    except OSError:
        return False
    return True


@pytest.mark.skipif(_has_libedgetpu(), reason="exercises the missing-libedgetpu path")
def test_delegate_missing_auto_falls_back_and_explicit_fails(bundle_with_edgetpu_entry):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = EdgePolicy.load(bundle_with_edgetpu_entry, device="auto")
    assert policy.device == "cpu"
    messages = [str(w.message) for w in caught if issubclass(w.category, EdgeTPUFallbackWarning)]
    assert len(messages) == 1 and edgetpu_library_name() in messages[0]
    for device in ("usb", "usb:0", "pci:1"):
        with pytest.raises(DeviceError, match=edgetpu_library_name()):
            EdgePolicy.load(bundle_with_edgetpu_entry, device=device)


def test_tampered_model_is_refused(built_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, dst)
    raw = bytearray((dst / "model_int8.tflite").read_bytes())
    raw[-10] ^= 0xFF
    (dst / "model_int8.tflite").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="sha256"):
        EdgePolicy.load(dst, device="cpu")


def test_truncated_model_is_refused(built_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, dst)
    (dst / "model_int8.tflite").write_bytes((dst / "model_int8.tflite").read_bytes()[:100])
    with pytest.raises(BundleError):
        EdgePolicy.load(dst, device="cpu")


def test_unknown_format_version_is_refused(built_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, dst)
    data = json.loads((dst / "manifest.json").read_text())
    data["format_version"] = 99
    (dst / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="format version 99"):
        EdgePolicy.load(dst, device="cpu")


@pytest.mark.parametrize("text,kind,option", [("auto", "auto", None), ("cpu", "cpu", None), ("usb", "usb", "usb"),
                                              ("usb:1", "usb", "usb:1"), ("PCI:0", "pci", "pci:0")])
def test_device_strings(text, kind, option):
    request = DeviceRequest.parse(text)
    assert request.kind == kind and request.delegate_device == option


def test_library_names_per_platform():
    assert edgetpu_library_name("Linux") == "libedgetpu.so.1"
    assert edgetpu_library_name("Darwin") == "libedgetpu.1.dylib"
    assert edgetpu_library_name("Windows") == "edgetpu.dll"


def test_interpreter_chain(monkeypatch):
    assert find_backend().name == "ai_edge_litert"
    with pytest.raises(UsageError):
        find_backend("nonsense")
    import edgekit.runtime.interpreters as interpreters

    monkeypatch.setattr(interpreters, "BACKENDS", ("no_such_pkg_a", "no_such_pkg_b"))
    with pytest.raises(MissingDependencyError, match="no TensorFlow Lite interpreter"):
        interpreters.find_backend()


def test_tensorflow_lite_interpreter_gives_the_same_actions(built_bundle):
    built = built_bundle("ppo-pendulum")
    a = EdgePolicy.load(built.bundle_dir, device="cpu")
    b = EdgePolicy.load(built.bundle_dir, device="cpu", interpreter="tensorflow")
    assert b.backend.name == "tensorflow"
    with np.load(built.bundle_dir / "calibration.npz") as data:
        obs = data["held_out"][:100]
    step = Manifest.read(built.bundle_dir).models["cpu"].output.quant.scale
    # kernels may differ by a few int8 steps (see the fidelity notes)
    assert np.max(np.abs(a.predict(obs) - b.predict(obs))) <= 3 * step + 1e-6


def test_runtime_imports_no_heavy_packages(built_bundle, tmp_path):
    """A fresh interpreter that loads and runs a bundle imports numpy and one TFLite interpreter only; so does
    the child process that probes each model first (runtime.probe), which imports nothing of edgekit."""
    bundle = built_bundle("ppo-pendulum").bundle_dir
    code = f"""
import json, subprocess, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from edgekit.runtime import EdgePolicy
p = EdgePolicy.load({str(bundle)!r}, device="auto")
p.predict([1.0, 0.0, 0.1]); p.predict([[1.0, 0.0, 0.1]] * 3)
from edgekit.runtime import serve, bench, probe
HEAVY = ("torch", "tensorflow", "onnx", "onnxruntime", "onnx2tf", "stable_baselines3", "gymnasium", "keras",
         "tf_keras", "jax")
print("HEAVY", sorted(m for m in HEAVY if m in sys.modules))
child = probe.child_arguments(p.backend, Path({str(bundle)!r}) / "model_int8.tflite", probe.DeviceRequest("cpu"),
                              None, report_modules=True)
modules = json.loads(subprocess.run(child, capture_output=True, text=True).stdout.splitlines()[-1])["modules"]
print("CHILD", sorted(m for m in modules if m in HEAVY or m == "edgekit"), "numpy" in modules)
"""
    env = {**os.environ, "EDGEKIT_PROBE_CACHE": str(tmp_path / "cache")}  # a fresh cache: the load probes
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout and "CHILD [] True" in proc.stdout, proc.stdout
    assert list((tmp_path / "cache").glob("*.json"))  # the load did probe


@pytest.mark.parametrize("name", ["ppo-pendulum", "ppo-cartpole", "td3-pendulum", "dqn-mountaincar",
                                  "td3-pendulum-split", "dqn-cartpole-split"])
@pytest.mark.parametrize("scalar_limit", [32, 0])  # 0 forces the numpy variant of the fast step
def test_fast_single_step_equals_the_general_path(built_bundle, name, scalar_limit, monkeypatch):
    import edgekit.runtime.step as step_module

    monkeypatch.setattr(step_module, "SCALAR_LIMIT", scalar_limit)
    built = built_bundle(name)
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    assert policy.fast_path
    with np.load(built.bundle_dir / "calibration.npz") as data:
        obs = np.concatenate([data["held_out"], data["calibration"]])
    rng = np.random.default_rng(0)
    obs = np.concatenate([obs, obs[:200] * rng.uniform(-50, 50, size=obs[:200].shape)]).astype(np.float32)
    general = policy._predict_general
    for row in obs:
        fast = policy.predict(row)
        slow = general(row)
        assert fast.shape == slow.shape and fast.dtype == slow.dtype
        np.testing.assert_array_equal(fast, slow)
    for bad in (np.array([np.nan] * obs.shape[1], dtype=np.float32), np.full(obs.shape[1], np.inf, np.float32)):
        with pytest.raises(InputError):
            policy.predict(bad)
    action = policy.predict(obs[0])
    action += 1  # a fresh, writable array each call, as SB3 returns
    assert not np.array_equal(action, policy.predict(obs[0]))
