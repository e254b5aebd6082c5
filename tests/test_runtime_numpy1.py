"""The device side with NumPy 1.x and tflite-runtime on the host, as many Raspberry Pi users have it.

A second venv on this host (x86-64) holds ``numpy<2``, ``tflite-runtime==2.14.0`` (its last release)
and the edgekit wheel with no extras: no ai-edge-litert, no TensorFlow, so the runtime's interpreter
chain falls through to tflite_runtime. There, ``scripts/pi_device_probe.py`` runs EdgePolicy.predict
on bundles built by this session and ``edgekit verify`` checks them; the results are compared with
this (NumPy 2, ai-edge-litert) environment's. The venv is cached in ~/.cache/edgekit/host-numpy1-venv
(or $EDGEKIT_NUMPY1_VENV); edgekit itself is reinstalled from a fresh wheel every session.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first run makes a venv and pip-installs into it

REQUIREMENTS = ["numpy<2", "tflite-runtime==2.14.0"]
TOLERANCE_STEPS = 3
CACHE = Path(os.environ.get("EDGEKIT_NUMPY1_VENV") or Path.home() / ".cache" / "edgekit" / "host-numpy1-venv")


def _check_script():
    """scripts/pi_emulated_check.py as a module (its wheel build, host results and comparison)."""
    name = "edgekit_pi_emulated_check"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "pi_emulated_check.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def numpy1_python(tmp_path_factory) -> Path:
    """The second venv's python, with edgekit from this checkout's wheel."""
    python = CACHE / "bin" / "python"
    marker = CACHE / "edgekit-venv.json"
    key = {"requirements": REQUIREMENTS, "base": sys.base_prefix, "version": sys.version}
    with _locked(CACHE.parent / f"{CACHE.name}.lock"):
        if not (marker.is_file() and python.exists() and json.loads(marker.read_text()) == key):
            shutil.rmtree(CACHE, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(CACHE)], check=True, capture_output=True, timeout=300)
            proc = _pip(python, *REQUIREMENTS)
            if proc.returncode != 0:
                shutil.rmtree(CACHE, ignore_errors=True)
                if "No matching distribution" in proc.stderr:
                    pytest.skip(f"tflite-runtime 2.14.0 has no wheel for Python {sys.version_info[0]}."
                                f"{sys.version_info[1]} on this platform")
                pytest.fail(f"pip install {' '.join(REQUIREMENTS)} failed:\n{proc.stderr[-2000:]}")
            marker.write_text(json.dumps(key))
        wheel = _check_script().build_wheel(tmp_path_factory.mktemp("wheel"))
        proc = _pip(python, "--no-deps", "--force-reinstall", str(wheel))
        assert proc.returncode == 0, proc.stderr
    return python


def _versions(python: Path) -> dict[str, str]:
    code = ("import json; from importlib import metadata as m; "
            "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                                     timeout=120).stdout)


def test_the_second_venv_has_numpy1_and_tflite_runtime_only(numpy1_python):
    dists = _versions(numpy1_python)
    assert dists["numpy"].startswith("1.") and dists["tflite-runtime"] == "2.14.0" and "edgekit" in dists
    assert not {"ai-edge-litert", "tensorflow", "torch", "onnx", "stable-baselines3", "gymnasium"} & set(dists)


@pytest.mark.parametrize("name", ["ppo-pendulum", "dqn-cartpole", "sac-pendulum", "ppo-dict-multidiscrete"])
def test_predict_with_numpy1_and_tflite_runtime_matches_the_host(numpy1_python, built_bundle, name, tmp_path):
    script = _check_script()
    bundle = built_bundle(name).bundle_dir
    with np.load(bundle / "calibration.npz") as data:
        obs = np.asarray(data["held_out"], dtype=np.float32)
    host = script.host_results(bundle, obs)
    host.pop("policy")
    np.savez(tmp_path / "obs.npz", observations=obs)
    proc = subprocess.run([str(numpy1_python), str(script.PROBE), str(bundle), "--obs", str(tmp_path / "obs.npz"),
                           "--out", str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["numpy"].startswith("1.") and probe["interpreter"] == "tflite_runtime"
    assert probe["heavy_modules"] == [] and probe["fast_path"] and probe["single_equals_batch"]
    with np.load(tmp_path / "out.npz") as data:
        device = {k: data[k] for k in data.files}
    comparison = script.compare(host, device)
    assert comparison["inputs_identical"], comparison  # numpy 1.26 quantizes exactly as numpy 2
    assert comparison["max_steps"] <= TOLERANCE_STEPS, comparison
    assert device["actions"].dtype == host["actions"].dtype and device["actions"].shape == host["actions"].shape


@pytest.mark.parametrize("name", ["ppo-pendulum", "dqn-cartpole"])
def test_verify_with_numpy1_and_tflite_runtime(numpy1_python, built_bundle, name, tmp_path):
    bundle = built_bundle(name).bundle_dir
    proc = subprocess.run([str(numpy1_python), "-m", "edgekit", "verify", str(bundle), "--device", "cpu", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] and result["interpreter"] == "tflite_runtime" and result["max_steps"] <= TOLERANCE_STEPS


def test_serve_with_numpy1_and_tflite_runtime(numpy1_python, built_bundle, tmp_path):
    bundle = built_bundle("dqn-cartpole").bundle_dir
    lines = "[0.0, 0.1, 0.0, -0.1]\nnot json\n[1.0]\n{\"id\": 3, \"obs\": [0.0, 0.0, 0.0, 0.0]}\n"
    proc = subprocess.run([str(numpy1_python), "-m", "edgekit", "run", str(bundle), "--serve", "stdio",
                           "--device", "cpu"], input=lines, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [sorted(r) for r in replies] == [["action"], ["error"], ["error"], ["action", "id"]]
    assert isinstance(replies[0]["action"], int) and replies[3]["id"] == 3
