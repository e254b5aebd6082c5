"""The command line as a user meets it: one-line errors with a fix, exit codes, no tracebacks."""

from __future__ import annotations

import json
import zipfile

import pytest
from conftest import EXAMPLE_MODEL, run_cli, run_cli_batch
from conftest import assert_one_line_error as _assert_one_line_error


def _not_a_zip(folder):
    bad = folder / "model.zip"
    bad.write_text("hello")
    return bad


def _zip_without_policy(folder):
    bad = folder / "model.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("data", "{}")
    return bad


def _unknown_algorithm(folder):
    bad = folder / "model.zip"
    with zipfile.ZipFile(EXAMPLE_MODEL) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "data":
                data = json.loads(payload)
                data["policy_class"]["__module__"] = "my_algorithms.policies"
                payload = json.dumps(data).encode()
            dst.writestr(item, payload)
    return bad


def _existing_output(folder):
    (folder / "b").mkdir()
    (folder / "b" / "keep.txt").write_text("mine")
    return EXAMPLE_MODEL


# case -> (makes the model in the case's folder, the build's other arguments); each case writes to FOLDER/b
BUILD_CASES = {
    "missing model": (lambda folder: folder / "nope.zip", ("--env", "Pendulum-v1")),
    "not a zip": (_not_a_zip, ("--env", "Pendulum-v1")),
    "zip without policy": (_zip_without_policy, ("--env", "Pendulum-v1")),
    "unknown algorithm": (_unknown_algorithm, ("--env", "CartPole-v1")),
    "unknown env id": (lambda folder: EXAMPLE_MODEL, ("--env", "Pendulm-v1")),
    "env does not fit": (lambda folder: EXAMPLE_MODEL, ("--env", "MountainCarContinuous-v0")),
    "existing output": (_existing_output, ("--env", "Pendulum-v1")),
    "bad option value": (lambda folder: EXAMPLE_MODEL, ("--env", "Pendulum-v1", "--calibration-steps", "5")),
}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """case -> (`edgekit build` as the case runs it, the case's folder): the failing builds run one after the
    other in one interpreter (conftest.run_cli_batch), each with its own fds and exit code."""
    folders = {case: tmp_path_factory.mktemp(case.replace(" ", "-")) for case in BUILD_CASES}
    commands = [("build", str(make(folders[case])), *args, "-o", str(folders[case] / "b"))
                for case, (make, args) in BUILD_CASES.items()]
    return {case: (proc, folders[case]) for case, proc in zip(BUILD_CASES, run_cli_batch(commands))}


def test_missing_model_file(builds):
    proc, folder = builds["missing model"]
    _assert_one_line_error(proc, "does not exist")
    assert not (folder / "b").exists()


def test_not_a_zip(builds):
    _assert_one_line_error(builds["not a zip"][0], "not a zip")


def test_zip_without_policy(builds):
    _assert_one_line_error(builds["zip without policy"][0], "not an SB3 model")


def test_unknown_algorithm_lists_supported(builds):
    _assert_one_line_error(builds["unknown algorithm"][0], "my_algorithms.policies", "PPO, A2C, SAC, TD3, DDPG, DQN",
                           "TQC, QRDQN, TRPO, ARS, CrossQ from sb3-contrib")


def test_unknown_env_id_suggests(builds):
    proc, folder = builds["unknown env id"]
    _assert_one_line_error(proc, "unknown Gymnasium environment", "did you mean Pendulum-v1")
    assert not (folder / "b").exists()


def test_env_that_does_not_fit_the_model(builds):
    proc, folder = builds["env does not fit"]
    _assert_one_line_error(proc, "observations Box(3,)", "MountainCarContinuous-v0 has Box(2,)")
    assert not (folder / "b").exists()
    assert not any(p.name.startswith(".b.partial") for p in folder.iterdir())


def test_existing_output_needs_force(builds):
    proc, folder = builds["existing output"]
    _assert_one_line_error(proc, "already exists", "--force")
    assert (folder / "b" / "keep.txt").read_text() == "mine"


def test_bad_option_values(builds):
    _assert_one_line_error(builds["bad option value"][0], "--calibration-steps")


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
