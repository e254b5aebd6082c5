"""The command line as a user meets it: one-line errors with a fix, exit codes, no tracebacks."""

from __future__ import annotations

import json
import zipfile

import pytest
from conftest import EXAMPLE_MODEL, run_cli


def _assert_one_line_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "  fix: " in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_missing_model_file(tmp_path):
    proc = run_cli("build", str(tmp_path / "nope.zip"), "--env", "Pendulum-v1", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "does not exist")
    assert not (tmp_path / "b").exists()


def test_not_a_zip(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_text("hello")
    proc = run_cli("build", str(bad), "--env", "Pendulum-v1", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "not a zip")


def test_zip_without_policy(tmp_path):
    bad = tmp_path / "model.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("data", "{}")
    proc = run_cli("build", str(bad), "--env", "Pendulum-v1", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "not an SB3 model")


def test_unknown_algorithm_lists_supported(tmp_path):
    bad = tmp_path / "model.zip"
    with zipfile.ZipFile(EXAMPLE_MODEL) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "data":
                data = json.loads(payload)
                data["policy_class"]["__module__"] = "my_algorithms.policies"
                payload = json.dumps(data).encode()
            dst.writestr(item, payload)
    proc = run_cli("build", str(bad), "--env", "CartPole-v1", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "my_algorithms.policies", "PPO, A2C, SAC, TD3, DDPG, DQN",
                           "TQC, QRDQN, TRPO, ARS, CrossQ from sb3-contrib")


def test_unknown_env_id_suggests(tmp_path):
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulm-v1", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "unknown Gymnasium environment", "did you mean Pendulum-v1")
    assert not (tmp_path / "b").exists()


def test_env_that_does_not_fit_the_model(tmp_path):
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "MountainCarContinuous-v0", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "observations Box(3,)", "MountainCarContinuous-v0 has Box(2,)")
    assert not (tmp_path / "b").exists()
    assert not any(p.name.startswith(".b.partial") for p in tmp_path.iterdir())


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out))
    _assert_one_line_error(proc, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_option_values(tmp_path):
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "--calibration-steps", "5",
                   "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "--calibration-steps")


def test_debug_env_shows_traceback(tmp_path):
    proc = run_cli("build", str(tmp_path / "nope.zip"), "--env", "Pendulum-v1", env={"EDGEKIT_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_run_on_missing_bundle(tmp_path):
    proc = run_cli("run", str(tmp_path / "none"), "--device", "cpu")
    _assert_one_line_error(proc, "is not a directory")


@pytest.mark.parametrize("device", ["gpu", "usb:x", "cpu:1"])
def test_run_rejects_unknown_device(built_bundle, device):
    proc = run_cli("run", str(built_bundle("ppo-pendulum").bundle_dir), "--device", device)
    _assert_one_line_error(proc, "unknown device")


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("build", "run", "bench"):
        assert command in proc.stdout
