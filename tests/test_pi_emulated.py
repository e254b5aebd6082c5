"""The device side on a Raspberry Pi OS userland: Debian 12 arm64, Python 3.11, under qemu user emulation.

Wraps ``scripts/pi_emulated_check.py`` (one run per session, on two bundles built by this session)
and asserts on its JSON report. The first run makes the emulated root and venv
(a few minutes); they are cached in ~/.cache/edgekit/pi-rootfs (or $EDGEKIT_PI_ROOTFS).

Where qemu-aarch64-static or debootstrap is missing, the tests skip with that reason; in CI
(CI=true) as root they are apt-get installed first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "pi_emulated_check.py"
SETUP_PI = REPO / "device" / "setup-pi.sh"
SKIP_EXIT = 77
# Small policies (PPO with tanh, continuous; DQN with ReLU, discrete), held to 3 steps. A trained policy
# with tanh layers can differ by more (the shipped example: up to 9 steps, as much as the host's own
# XNNPACK and reference kernels differ from each other): see docs/tested-on.md. `scripts/pi_emulated_check.sh`
# without --bundle checks the shipped example.
STRICT_BUNDLES = ("ppo-pendulum", "dqn-cartpole")
TOLERANCE_STEPS = 3


def _may_install() -> bool:
    return os.environ.get("CI") == "true" and os.geteuid() == 0


@pytest.fixture(scope="module")
def report(built_bundle, tmp_path_factory):
    """The script's JSON report, or a skip with the script's reason."""
    if not _may_install():
        if not shutil.which("qemu-aarch64-static"):
            pytest.skip("qemu-aarch64-static not found (apt-get install qemu-user-static); "
                        "installed automatically only in CI as root")
        if not shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            pytest.skip("debootstrap not found (apt-get install debootstrap); "
                        "installed automatically only in CI as root")
    out = tmp_path_factory.mktemp("pi-emulated") / "report.json"
    cmd = [sys.executable, str(SCRIPT), "--json", str(out), "--strict"]
    for name in STRICT_BUNDLES:
        cmd += ["--bundle", str(built_bundle(name).bundle_dir)]
    if _may_install():
        cmd.append("--install-tools")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2700, cwd=REPO)
    data = json.loads(out.read_text()) if out.is_file() else {}
    if proc.returncode == SKIP_EXIT:
        pytest.skip(f"emulated Raspberry Pi OS check skipped: {data.get('skipped', proc.stderr.strip()[-300:])}")
    assert data, f"no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data["_output"] = proc.stdout + proc.stderr
    return data


def _bundle(report, name):
    """The result for this session's bundle ``name``."""
    for result in report["bundles"]:
        if Path(result["bundle"]).name == f"{name}.bundle":
            return result
    raise AssertionError(f"no result for {name} in {[r['bundle'] for r in report['bundles']]}")


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_every_check_passes(report):
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert not failed and report["exit_code"] == 0, "\n".join(failed) or report["_output"][-3000:]


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_device_extra_resolves_to_tflite_runtime_and_numpy1(report):
    dists = report["venv"]["distributions"]
    assert dists["tflite-runtime"] == "2.14.0" and dists["numpy"].startswith("1.")
    assert "ai-edge-litert" not in dists
    heavy = {"torch", "tensorflow", "onnx", "onnxruntime", "stable-baselines3", "gymnasium", "keras", "tf-keras"}
    assert not heavy & set(dists), sorted(dists)


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("name", STRICT_BUNDLES)
def test_aarch64_results_equal_the_host_within_3_steps(report, name):
    result = _bundle(report, name)
    platform, comparison = result["device_platform"], result["comparison"]
    assert platform["machine"] == "aarch64" and platform["interpreter"] == "tflite_runtime"
    assert comparison["inputs_identical"]  # numpy 1.26 on aarch64 quantizes exactly as numpy 2 on x86-64
    assert comparison["max_steps"] <= TOLERANCE_STEPS, comparison
    assert result["verify"]["passed"] and result["verify"]["max_steps"] <= TOLERANCE_STEPS


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_import_isolation_on_aarch64(report):
    for result in report["bundles"]:
        platform = result["device_platform"]
        assert platform["heavy_modules"] == [], result["bundle"]
        assert platform["single_equals_batch"] and platform["fast_path"]


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_serve_loop_answers_and_survives_bad_lines_on_aarch64(report):
    for result in report["bundles"]:
        serve = result["serve"]
        assert serve["problems"] == [], serve
        assert serve["responses"] == serve["expected_responses"] == 8 and serve["errors_answered"] == 4
        assert serve["exit_code"] == 0


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_setup_pi_dry_run_in_the_emulated_root(report):
    setup = report["setup_pi"]
    assert setup["exit_code"] == 0 and len(setup["steps"]) == 7
    assert "tflite-runtime 2.14.0" in setup["installed"] and "numpy 1." in setup["installed"]
    skipped = "\n".join(setup["skipped"])
    assert "apt-get install" in skipped and "coral-edgetpu" in skipped and "usermod" in skipped


def test_setup_pi_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck not found (apt-get install shellcheck)")
    for script in (SETUP_PI, REPO / "scripts" / "pi_emulated_check.sh"):
        proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout


def test_setup_pi_emulation_options_need_dry_run():
    proc = subprocess.run(["bash", str(SETUP_PI), "--python", sys.executable], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "for --dry-run only" in proc.stderr
    proc = subprocess.run(["bash", str(SETUP_PI), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout
