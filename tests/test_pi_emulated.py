"""The device side on both Raspberry Pi OS userlands under qemu 10 user emulation: Bookworm (Debian 12 arm64,
Python 3.11) and Trixie (Debian 13 arm64, Python 3.13).

Wraps ``scripts/pi_emulated_check.py`` (one run per session, on two bundles built by this session) and
asserts on its JSON report. The first run fetches trixie's qemu-user, makes both roots and venvs (many minutes:
pip runs emulated); they are cached in ~/.cache/edgekit/pi-rootfs (or $EDGEKIT_PI_ROOTFS).

Where debootstrap or qemu 10 is missing, the tests skip with that reason; in CI (CI=true) as root they are
installed first (debootstrap with apt-get, qemu-aarch64 unpacked from trixie's qemu-user .deb into the cache).
The script runs in the background from the session's first test on, and these tests run last
(tests/pi_emulated_run.py, tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pi_emulated_run
import pytest
from conftest import REPO
from pi_emulated_run import STRICT_BUNDLES

SETUP_PI = REPO / "device" / "setup-pi.sh"
# A trained policy with tanh layers can differ by more than the small ones' 3 steps (the shipped example: up to
# 9 steps, as much as the host's own XNNPACK and reference kernels differ from each other): see
# docs/tested-on.md. `scripts/pi_emulated_check.sh` without --bundle checks the shipped example.
TOLERANCE_STEPS = 3
USERLANDS = {"bookworm": "3.11", "trixie": "3.13"}
# The PyPI interpreter standing in for the pair's tflite_runtime 2.17.1 wheel (same API), per userland.
PAIR_STANDIN = {"bookworm": ("tflite_runtime", "tflite-runtime 2.14.0", "1."),
                "trixie": ("ai_edge_litert", "ai-edge-litert 2.3.0", "2.")}
# The first run makes the roots and venvs (many minutes); the check itself may have started at the session's
# first test (tests/pi_emulated_run.py), this module's tests wait for it at the end of the run.
pytestmark = pytest.mark.timeout(pi_emulated_run.TIMEOUT_S + 600)


@pytest.fixture(scope="module")
def report(built_bundle, tmp_path_factory):
    """The script's JSON report, or a skip with the script's reason."""
    reason = pi_emulated_run.missing_tools()
    if reason:
        pytest.skip(reason)
    run = pi_emulated_run.started() or pi_emulated_run.start(
        [built_bundle(name).bundle_dir for name in STRICT_BUNDLES], tmp_path_factory.mktemp("pi-emulated"))
    code, output = run.wait()
    data = json.loads(run.report.read_text()) if run.report.is_file() else {}
    if code == pi_emulated_run.SKIP_EXIT:
        pytest.skip(f"emulated Raspberry Pi OS check skipped: {data.get('skipped', output.strip()[-300:])}")
    assert data, f"no report (exit {code}):\n{output[-6000:]}"
    data["_output"] = output
    return data


def _results(report, suite, name, venv="device extra"):
    """The results for this session's bundle ``name`` in one userland's venv."""
    found = [r for r in report["userlands"][suite]["bundles"]
             if Path(r["bundle"]).name == f"{name}.bundle" and r["label"].startswith(f"{suite} {venv}")]
    assert found, f"no result for {name} in {suite} {venv}"
    return found[0]


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_every_check_passes_in_both_userlands(report):
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert not failed and report["exit_code"] == 0, "\n".join(failed) or report["_output"][-3000:]
    assert report["tools"]["qemu"].startswith("qemu-aarch64 version 10.")
    for suite, python in USERLANDS.items():
        root = report["userlands"][suite]["root"]
        assert root["machine"] == "aarch64" and root["python"].startswith(python + "."), root


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("suite", USERLANDS)
def test_device_extra_resolves_to_ai_edge_litert_and_numpy2(report, suite):
    dists = report["userlands"][suite]["venv"]["distributions"]
    assert "ai-edge-litert" in dists and dists["numpy"].startswith("2."), dists
    assert "tflite-runtime" not in dists
    heavy = {"torch", "tensorflow", "onnx", "onnxruntime", "stable-baselines3", "gymnasium", "keras", "tf-keras"}
    assert not heavy & set(dists), sorted(dists)


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("suite", USERLANDS)
@pytest.mark.parametrize("name", STRICT_BUNDLES)
def test_aarch64_results_equal_the_host_within_3_steps(report, suite, name):
    result = _results(report, suite, name)
    platform, comparison = result["device_platform"], result["comparison"]
    assert platform["machine"] == "aarch64" and platform["interpreter"] == "ai_edge_litert"
    assert platform["python"].startswith(USERLANDS[suite] + ".") and platform["numpy"].startswith("2.")
    assert comparison["inputs_identical"]
    assert comparison["max_steps"] <= TOLERANCE_STEPS, comparison
    assert result["verify"]["passed"] and result["verify"]["max_steps"] <= TOLERANCE_STEPS


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("suite", USERLANDS)
def test_the_pairs_interpreter_api_with_its_pypi_stand_in(report, suite):
    module, installed, numpy_major = PAIR_STANDIN[suite]
    result = _results(report, suite, STRICT_BUNDLES[0], venv="setup-pi venv")
    platform, comparison = result["device_platform"], result["comparison"]
    assert platform["interpreter"] == module and platform["numpy"].startswith(numpy_major), platform
    assert comparison["inputs_identical"] and comparison["max_steps"] <= TOLERANCE_STEPS, comparison
    assert result["verify"]["passed"] and result["serve"]["problems"] == [] and result["bench"]["exit_code"] == 0
    assert installed in report["userlands"][suite]["setup_pi"]["installed"]


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_import_isolation_on_aarch64(report):
    for suite in USERLANDS:
        for result in report["userlands"][suite]["bundles"]:
            platform = result["device_platform"]
            assert platform["heavy_modules"] == [], result["bundle"]
            assert platform["single_equals_batch"] and platform["fast_path"]


@pytest.mark.pi_emulated
@pytest.mark.slow
def test_serve_loop_answers_and_survives_bad_lines_on_aarch64(report):
    for suite in USERLANDS:
        for result in report["userlands"][suite]["bundles"]:
            serve = result["serve"]
            assert serve["problems"] == [], serve
            assert serve["responses"] == serve["expected_responses"] == 8 and serve["errors_answered"] == 4
            assert serve["exit_code"] == 0


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("suite", USERLANDS)
def test_setup_pi_dry_run_installs_the_stand_in_pair_in_the_emulated_root(report, suite):
    setup = report["userlands"][suite]["setup_pi"]
    assert setup["exit_code"] == 0 and len(setup["steps"]) == 7
    assert setup["pair"].startswith(f"pair STAND-IN-{suite}-py{USERLANDS[suite]}-arm64-tf2.17.1")
    assert len(setup["verified"]) == 2  # the stand-in .deb and wheel, by the stand-in table's sha256
    skipped = "\n".join(setup["skipped"])
    assert "apt-get install -y --allow-downgrades" in skipped and "standin-libedgetpu1-std" in skipped
    assert "usermod" in skipped and setup["doctor"]


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("suite", USERLANDS)
def test_doctor_in_the_emulated_userland(report, suite):
    doctor = report["userlands"][suite]["doctor"]
    assert doctor["exit_code"] == 1 and doctor["heavy_modules"] == ""  # no Coral, no libedgetpu here
    topics = {f["topic"]: f for f in doctor["findings"]}
    assert topics["tested pair"]["detail"].startswith(f"{suite}-py{USERLANDS[suite]}-arm64")
    assert topics["libedgetpu"]["status"] == "fail" and topics["Coral USB Accelerator"]["status"] == "fail"


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("suite", USERLANDS)
def test_doctor_probes_a_bundle_in_children_under_the_emulator(report, suite):
    """doctor BUNDLE on aarch64: the bundle's Edge TPU model (a STAND-IN entry: its CPU model) with a
    libedgetpu.so.1 STAND-IN that is not a library, and its CPU model, each probed in a child process that
    EDGEKIT_PROBE_LAUNCHER starts under qemu; the broken library is a FAIL with the fix, not a crash."""
    doctor = report["userlands"][suite]["doctor_bundle"]
    probes = {f["topic"]: f for f in doctor["findings"]}
    tpu, cpu = probes["Edge TPU probe"], probes["CPU model probe"]
    assert doctor["exit_code"] == 1 and tpu["status"] == "fail", doctor
    assert doctor["libedgetpu"] in tpu["detail"] and "while loading libedgetpu" in tpu["detail"]
    assert "device/README.md" in tpu["fix"]
    assert cpu["status"] == "ok" and "ran once with ai_edge_litert" in cpu["detail"], cpu


@pytest.mark.pi_emulated
@pytest.mark.slow
@pytest.mark.parametrize("suite", USERLANDS)
def test_without_the_launcher_the_probe_names_it(report, suite):
    """No binfmt_misc here: the kernel cannot exec the probe's aarch64 child (ENOEXEC on Bookworm's 3.11; exit
    status 127 from posix_spawn on Trixie's 3.13). Either way: the launcher's DeviceError, not a bad model."""
    bare = report["userlands"][suite]["probe_without_launcher"]
    assert bare["outcome"] == "not-started" and bare["error"] == "DeviceError", bare
    assert "EDGEKIT_PROBE_LAUNCHER" in bare["hint"]


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
