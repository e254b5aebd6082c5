"""`edgekit verify`: hashes and host-vs-device outputs, on real bundles."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import run_cli

from edgekit.bundle import sha256_file


def test_verify_passes_on_the_build_machine(built_bundle):
    proc = run_cli("verify", str(built_bundle("dqn-cartpole").bundle_dir), "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] and result["max_steps"] == 0 and result["samples"] > 100
    assert result["action_mismatches"] == 0


def test_verify_fails_when_outputs_differ_beyond_tolerance(built_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, dst)
    with np.load(dst / "verify.npz") as data:
        obs, outputs = data["observations"], data["outputs"].copy()
    manifest = json.loads((dst / "manifest.json").read_text())
    outputs[0] += 10 * manifest["models"]["cpu"]["output"]["scale"]  # as if this device computed otherwise
    np.savez_compressed(dst / "verify.npz", observations=obs, outputs=outputs)
    manifest["files"]["verify.npz"] = sha256_file(dst / "verify.npz")
    (dst / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("verify", str(dst), "--device", "cpu", "--tolerance-steps", "3")
    assert proc.returncode == 1 and "max 10 int8 steps" in proc.stdout and "✗" in proc.stdout


def test_default_tolerance_covers_the_hosts_own_kernel_spread(built_bundle):
    from edgekit.runtime import EdgePolicy
    from edgekit.runtime.verify import default_tolerance, kernel_spread_steps

    bundle = built_bundle("td3-pendulum").bundle_dir
    with np.load(bundle / "verify.npz") as data:
        recorded, obs = float(data["kernel_spread_steps"]), data["observations"]
    assert recorded == kernel_spread_steps(EdgePolicy.load(bundle, device="cpu"), obs)
    assert default_tolerance(recorded) == max(3.0, 2 * recorded)
    assert default_tolerance(0.0) == 3.0 and default_tolerance(7.0) == 14.0


def test_verify_refuses_a_tampered_file(built_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, dst)
    (dst / "policy.onnx").write_bytes(b"changed")
    proc = run_cli("verify", str(dst), "--device", "cpu")
    assert proc.returncode == 1 and "policy.onnx does not match its sha256" in proc.stderr


def huge_bounds_bundle(built_bundle, tmp_path):
    """A TD3 bundle (unscaled actions) whose action bounds are +-3e38: high - low overflows float32, so the
    unscaled actions are not finite. (A manifest check may come to refuse such bounds: then the command
    must stop with one error line instead.)"""
    dst = tmp_path / "huge-bounds"
    shutil.copytree(built_bundle("td3-pendulum").bundle_dir, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["postprocess"] == "unscale"
    manifest["action_space"]["low"], manifest["action_space"]["high"] = [-3e38], [3e38]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _one_error_line(proc) -> bool:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr


def test_verify_fails_when_the_actions_are_not_finite(built_bundle, tmp_path):
    proc = run_cli("verify", str(huge_bounds_bundle(built_bundle, tmp_path)), "--device", "cpu")
    if proc.returncode == 1 and "✗" in proc.stdout:
        assert "not finite (NaN or infinity) ✗" in proc.stdout, proc.stdout
    else:
        assert _one_error_line(proc) and "bound" in proc.stderr, (proc.stdout, proc.stderr)


def test_verify_fails_on_action_differences_the_tolerance_does_not_explain(built_bundle):
    """Outputs within tolerance but an argmax that no output within the tolerance would pick: a failure."""
    from edgekit.core.postprocess import PostProcessor
    from edgekit.core.spaces import SpaceSpec
    from edgekit.runtime.verify import explained_by_tolerance

    discrete = PostProcessor("argmax", SpaceSpec(kind="discrete", shape=(), dtype="int64", n=3))
    host = np.array([[0.0, 1.0, 0.95], [0.0, 1.0, 0.2]])
    actions = np.array([2, 2])  # the first: a near-tie, explained; the second: not
    assert explained_by_tolerance(discrete, host, actions, tolerance=0.05).tolist() == [True, False]
    box = PostProcessor("clip", SpaceSpec(kind="box", shape=(1,), dtype="float32", low=(-2.0,), high=(2.0,)))
    host = np.array([[0.5], [0.5], [0.5], [5.0]])
    actions = np.array([[0.52], [0.7], [np.nan], [2.0]], dtype=np.float32)
    assert explained_by_tolerance(box, host, actions, tolerance=0.05).tolist() == [True, False, False, True]


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "-inf"])
def test_a_tolerance_that_is_not_a_number_of_steps_is_a_usage_error(built_bundle, value):
    proc = run_cli("verify", str(built_bundle("dqn-cartpole").bundle_dir), f"--tolerance-steps={value}")
    assert proc.returncode == 2 and _one_error_line(proc) and "--tolerance-steps" in proc.stderr, proc.stderr
