"""`edgekit build` as a user runs it, on the shipped example agent."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLE_MODEL, REPO, run_cli

from edgekit.bundle import Manifest, verify_all


@pytest.mark.slow
def test_build_example_quiet_with_recorded_calibration_data(tmp_path):
    out = tmp_path / "bundle"
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out), "-q",
                   "--calibration-data", str(REPO / "calibration" / "pendulum-example.npy"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and proc.stderr == ""
    manifest = Manifest.read(out)
    verify_all(out, manifest)
    assert manifest.calibration["source"] == "pendulum-example.npy"
    assert manifest.calibration["calibration_steps"] == 2000
    report = json.loads((out / "report.json").read_text())
    # the conditioned int8 example meets the fidelity targets: 0.5 % mean / 2 % p99 of the action range
    assert report["validation"]["continuous"]["mean_share_of_range"] < 0.005
    assert report["validation"]["continuous"]["p99_share_of_range"] < 0.02
    again = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out), "-q")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_missing_calibration_data_is_a_one_line_error(tmp_path):
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(tmp_path / "b"),
                   "--calibration-data", str(tmp_path / "none.npy"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "fix:" in proc.stderr


@pytest.mark.slow
def test_build_runs_the_compiler_when_given_one(tmp_path):
    """The build's compile stage with a STAND-IN compiler (copies its input, prints a log written from
    the documented format): checks the plumbing and bookkeeping only — nothing is compiled here."""
    import warnings

    from test_edgetpu_compile import COMPILER_16, DOCUMENTED_FULL, _copying_standin

    from edgekit.runtime import EdgePolicy

    standin = _copying_standin(tmp_path, DOCUMENTED_FULL)
    out = tmp_path / "bundle"
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out),
                   "--compiler", str(standin), "--calibration-steps", "300", "--validation-steps", "300")
    assert proc.returncode == 0, proc.stderr
    assert "compile Edge TPU" in proc.stderr and "no Edge TPU compiler here" not in proc.stderr
    manifest = Manifest.read(out)
    verify_all(out, manifest)
    assert manifest.models["edgetpu"].file == "model_int8_edgetpu.tflite"
    assert manifest.versions["edgetpu_compiler"] == COMPILER_16
    report = json.loads((out / "report.json").read_text())
    compiled = report["build"]["edgetpu_compile"]
    assert compiled["fully_mapped"] is True and compiled["ops_on_cpu"] == 0
    assert report["build"]["edgetpu_check"]["fully_mappable"] is True
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert EdgePolicy.load(out, device="auto").device == "cpu"  # no libedgetpu here: CPU fallback


def test_build_without_compiler_says_how_to_compile_later(built_bundle):
    report = json.loads((built_bundle("ppo-pendulum").bundle_dir / "report.json").read_text())
    assert report["build"]["edgetpu_compile"] is None
    assert report["build"]["edgetpu_check"]["fully_mappable"] is True


def test_calibrate_writes_a_set_that_build_and_inspect_read(tmp_path):
    import numpy as np

    from edgekit.stages.rollouts import read_calibration_meta, read_observation_array

    out = tmp_path / "calib.npz"
    proc = run_cli("calibrate", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out), "--steps", "300",
                   "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    assert "300 observations of 3 features" in proc.stdout and f"--calibration {out}" in proc.stdout
    meta = read_calibration_meta(out)
    assert meta["format"] == "edgekit-calibration-set" and meta["env_id"] == "Pendulum-v1"
    assert meta["recipe"] == "control" and meta["steps"] == 300 and meta["seed"] == 4
    observations = read_observation_array(out)
    assert observations.shape == (300, 3) and np.abs(observations[:, :2]).max() <= 1.0
    inspected = run_cli("calibrate", "--inspect", str(out))
    assert inspected.returncode == 0 and '"recipe": "control"' in inspected.stdout
    assert inspected.stdout.count("feature ") == 3
    again = run_cli("calibrate", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    unknown = run_cli("calibrate", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(tmp_path / "x.npz"),
                      "--recipe", "nope")
    assert unknown.returncode == 2 and "control" in unknown.stderr


def test_recipes_by_episode_length_with_overrides():
    from edgekit.stages.rollouts import recipe_for

    recipe, name = recipe_for("Pendulum-v1")
    assert name == "control" and recipe.steps(image=False) == (2000, 2000) and recipe.random_action_share == 0.1
    assert recipe.steps(image=True) == (500, 500)  # images: kilobytes each, through a CNN
    recipe, name = recipe_for("Pendulum-v1", "long-episodes", random_action_share=0.0, steps=None)
    assert name == "long-episodes" and recipe.calibration_steps == 5000 and recipe.min_episodes == 10
    assert recipe.random_action_share == 0.0


def test_no_flags_switch_off_the_measured_conditioning_steps():
    import argparse

    from edgekit.commands import build

    parser = argparse.ArgumentParser()
    build.register(parser.add_subparsers())
    args = parser.parse_args(["build", "m.zip", "--env", "Pendulum-v1", "--no-widen", "--no-split-input"])
    options = build.conditioning_options(args)
    assert not options.widen and options.input_split == 0 and options.finetune and options.input_scaling
    default = build.conditioning_options(parser.parse_args(["build", "m.zip", "--env", "Pendulum-v1"]))
    assert default.widen and default.input_split == 16 and default.finetune and default.per_channel
    args = parser.parse_args(["build", "m.zip", "--env", "Pendulum-v1", "--no-per-channel"])
    assert not build.conditioning_options(args).per_channel and build.conditioning_options(args).widen
