"""`edgekit verify`: hashes and host-vs-device outputs, on real bundles."""

from __future__ import annotations

import json
import shutil

import numpy as np
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
