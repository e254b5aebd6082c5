"""An Edge TPU that fails mid-run: the policy moves to the CPU int8 model and keeps answering.

STAND-INS: the do-nothing libedgetpu (tests/fake_libedgetpu.py) opens the "Edge TPU" policy, and
tests/standins/tflite_runtime is ai_edge_litert's interpreter under tflite_runtime's name with a fault
injected (EDGEKIT_STANDIN_FAIL_AFTER=N: a delegated interpreter's invoke raises RuntimeError after N
calls, as libedgetpu does when the USB stick is pulled). Nothing here runs on a TPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from edgekit.core.errors import BundleError
from edgekit.runtime import EdgePolicy, EdgeTPUFallbackWarning

STANDINS = Path(__file__).parent / "standins"
BUNDLE = "ppo-pendulum"
OBS = [[1.0, 0.0, 0.5], [0.0, 1.0, -2.0], [-1.0, 0.0, 7.5], [0.6, 0.8, 1.0], [0.2, -0.9, -3.0], [1.0, 0.0, 0.0]]


def _env(fake_libedgetpu, tmp_path, fail_after: int, cpu_too: bool = False) -> dict[str, str]:
    env = {"LD_LIBRARY_PATH": str(fake_libedgetpu["NOOP"]), "EDGEKIT_STANDIN_FAIL_AFTER": str(fail_after),
           "PYTHONPATH": os.pathsep.join(p for p in (str(STANDINS), os.environ.get("PYTHONPATH", "")) if p),
           "EDGEKIT_PROBE_CACHE": str(tmp_path / "probe-cache")}
    if cpu_too:
        env["EDGEKIT_STANDIN_FAIL_CPU"] = "1"
    return env


@pytest.fixture
def standin_interpreter(monkeypatch, fake_libedgetpu, tmp_path):
    """The fault-injecting tflite_runtime stand-in, importable in this process and in probe children."""
    for key, value in _env(fake_libedgetpu, tmp_path, 3).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("EDGEKIT_LIBEDGETPU", raising=False)
    monkeypatch.syspath_prepend(str(STANDINS))
    yield
    for name in [m for m in sys.modules if m == "tflite_runtime" or m.startswith("tflite_runtime.")]:
        del sys.modules[name]


def test_predict_moves_to_the_cpu_model_when_the_tpu_fails(standin_interpreter, edgetpu_bundle, built_bundle):
    policy = EdgePolicy.load(edgetpu_bundle(BUNDLE), device="usb", interpreter="tflite_runtime")
    cpu = EdgePolicy.load(built_bundle(BUNDLE).bundle_dir, device="cpu")
    assert policy.device == "usb" and policy.fast_path and policy.tpu_failure is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        actions = [policy.predict(o) for o in OBS] + [policy.predict(np.asarray(o, np.float32)) for o in OBS]
        batch = policy.predict(np.asarray(OBS, dtype=np.float32))
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, EdgeTPUFallbackWarning)]
    assert len(fallbacks) == 1 and "failed mid-run" in fallbacks[0] and "injected fault" in fallbacks[0]
    assert policy.device == "cpu" and policy.model_file == "model_int8.tflite"
    assert "injected fault" in policy.tpu_failure and policy.fallback_predictions == len(OBS) * 2 - 3 + 1
    np.testing.assert_array_equal(np.stack(actions), np.concatenate([cpu.predict(OBS)] * 2))
    np.testing.assert_array_equal(batch, cpu.predict(OBS))


def _serve(bundle: Path, env: dict[str, str], device: str, lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgekit", "run", str(bundle), "--device", device, "--interpreter",
                           "tflite_runtime", "--serve", "stdio"], input="".join(line + "\n" for line in lines),
                          capture_output=True, text=True, cwd=REPO, timeout=180, env={**os.environ, **env})


def test_the_server_keeps_answering_on_the_cpu_and_says_so(fake_libedgetpu, edgetpu_bundle, built_bundle, tmp_path):
    proc = _serve(edgetpu_bundle(BUNDLE), _env(fake_libedgetpu, tmp_path, 3), "usb",
                  [json.dumps({"id": i, "obs": o}) for i, o in enumerate(OBS)])
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in replies] == list(range(len(OBS)))
    assert ["fallback" in r for r in replies] == [False] * 3 + [True] * 3
    assert all(r["fallback"] == "cpu" for r in replies[3:])
    cpu = EdgePolicy.load(built_bundle(BUNDLE).bundle_dir, device="cpu")
    np.testing.assert_allclose([r["action"] for r in replies], cpu.predict(OBS), atol=0)
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "failed mid-run" in warned[0], proc.stderr
    assert "the Edge TPU (usb) failed mid-run" in proc.stderr and "3 requests answered on the CPU int8 model since" \
        in proc.stderr, proc.stderr


def test_episodes_go_on_on_the_cpu_and_say_so(fake_libedgetpu, edgetpu_bundle, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(edgetpu_bundle(BUNDLE)), "--device", "usb",
                           "--interpreter", "tflite_runtime", "--env", "Pendulum-v1", "--episodes", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=180,
                          env={**os.environ, **_env(fake_libedgetpu, tmp_path, 50)})
    assert proc.returncode == 0, proc.stderr
    assert "steps   200" in proc.stdout and "on cpu" in proc.stdout
    assert "150 steps answered on the CPU int8 model since" in proc.stderr, proc.stderr


def test_a_cpu_model_whose_invoke_raises_is_an_error_reply_and_the_server_goes_on(fake_libedgetpu, built_bundle,
                                                                                  tmp_path):
    proc = _serve(built_bundle(BUNDLE).bundle_dir, _env(fake_libedgetpu, tmp_path, 2, cpu_too=True), "cpu",
                  [json.dumps(o) for o in OBS])
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert ["action" in r for r in replies] == [True] * 2 + [False] * 4
    assert all("the interpreter failed to run model_int8.tflite" in r["error"] for r in replies[2:])
    assert "answered 6 requests; 4 bad observations" in proc.stderr


def test_predict_on_a_failing_cpu_model_is_a_bundle_error(monkeypatch, fake_libedgetpu, built_bundle, tmp_path):
    for key, value in _env(fake_libedgetpu, tmp_path, 1, cpu_too=True).items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(STANDINS))
    try:
        policy = EdgePolicy.load(built_bundle(BUNDLE).bundle_dir, device="cpu", interpreter="tflite_runtime")
        policy.predict(OBS[0])
        for obs in (OBS[0], np.asarray(OBS[1], np.float32), OBS):
            with pytest.raises(BundleError, match="injected fault"):
                policy.predict(obs)
        with pytest.raises(BundleError):
            policy.invoke_int8(np.zeros(3, dtype=np.int8))
    finally:
        for name in [m for m in sys.modules if m == "tflite_runtime" or m.startswith("tflite_runtime.")]:
            del sys.modules[name]
