"""Broken inputs a user meets, each a one-line error that says what is wrong and how to fix it, never
"unexpected ... this is an edgekit bug" (issue 17, item 9; the server's own are in
docs/security.md, "Observations and the server at run time")."""

from __future__ import annotations

import errno
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import EXAMPLE_MODEL, REPO, assert_one_line_error, run_cli, run_cli_batch
from hostile_pickles import array, floating, text, vecnormalize

from edgekit.core.errors import EdgekitError, ModelFileError
from edgekit.host.loading import load_agent
from edgekit.host.loading.vecnormalize import load_vecnormalize

FAST_BUILD = ("--no-finetune", "--no-widen", "--report-episodes", "0", "--calibration-steps", "400",
              "--validation-steps", "300")


def _rewrite(target: Path, policy: dict | None = None, data: dict | None = None) -> Path:
    """The example model with its weights or its data JSON replaced."""
    with zipfile.ZipFile(EXAMPLE_MODEL) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "policy.pth" and policy is not None:
                buffer = io.BytesIO()
                torch.save(policy, buffer)
                payload = buffer.getvalue()
            if item.filename == "data" and data is not None:
                payload = json.dumps(data).encode()
            dst.writestr(item, payload)
    return target


def _weights() -> dict:
    with zipfile.ZipFile(EXAMPLE_MODEL) as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)


# --- the model file ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,shown", [(float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf"),
                                         (1e30, "1e+30")])
def test_absurd_weights_are_caught_at_load_naming_the_tensor(tmp_path, value, shown):
    weights = _weights()
    key = "mlp_extractor.policy_net.2.weight"
    weights[key] = weights[key].clone()
    weights[key][3, 5] = value
    with pytest.raises(ModelFileError, match=rf"holds {re.escape(shown)} in tensor .{key}. at \[3, 5\]"):
        load_agent(_rewrite(tmp_path / "model.zip", policy=weights))


def test_absurd_weights_through_the_cli(tmp_path):
    weights = _weights()
    weights["action_net.weight"] = weights["action_net.weight"] * float("nan")
    proc = run_cli("build", str(_rewrite(tmp_path / "model.zip", policy=weights)), "--env", "Pendulum-v1",
                   "-o", str(tmp_path / "b"))
    assert_one_line_error(proc, "'action_net.weight'", "not a finite weight")


NOT_MODULE_NAMES = [5, None, ["stable_baselines3"], {"a": 1}]


def _with_policy_module(path, module):
    with zipfile.ZipFile(EXAMPLE_MODEL) as archive:
        data = json.loads(archive.read("data"))
    data["policy_class"]["__module__"] = module
    return _rewrite(path, data=data)


@pytest.fixture(scope="module")
def policy_module_builds(tmp_path_factory):
    """repr(module) -> `edgekit build` of the example with that policy-class module (the non-null ones), all
    in one interpreter."""
    cases = [module for module in NOT_MODULE_NAMES if module is not None]
    models = [_with_policy_module(tmp_path_factory.mktemp("module") / "model.zip", module) for module in cases]
    procs = run_cli_batch([("build", str(model), "--env", "Pendulum-v1", "-o", str(model.parent / "b"))
                           for model in models])
    return {repr(module): proc for module, proc in zip(cases, procs)}


@pytest.mark.parametrize("module", NOT_MODULE_NAMES)
def test_a_policy_class_module_that_is_not_a_string(tmp_path, module, request):
    if module is None:  # JSON null: no module at all, as a zip without the key
        with pytest.raises(EdgekitError):
            load_agent(_with_policy_module(tmp_path / "model.zip", module))
        return
    proc = request.getfixturevalue("policy_module_builds")[repr(module)]
    assert_one_line_error(proc, "policy class's module", "not a module name")


# --- VecNormalize statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize("mean,var,epsilon,clip,needle", [
    (array([0.0] * 3), array([1.0] * 3), floating(-1.0), floating(10.0), "negative epsilon"),
    (text("abc"), array([1.0] * 3), floating(1e-8), floating(10.0), "obs_rms.mean is not an array of numbers"),
    (array([0.0] * 3), text("x"), floating(1e-8), floating(10.0), "obs_rms.var is not an array of numbers"),
    (array([0.0] * 3), array([1.0, 0.0, 1.0]), floating(0.0), floating(10.0), "variance 0 and epsilon is 0"),
    (array([0.0] * 3), array([1.0] * 3), floating(1e-8), floating(-1.0), "clip_obs -1"),
    (array([0.0] * 3), array([1.0] * 3), floating(1e-8), floating(float("nan")), "clip_obs is not a number"),
    (array([0.0] * 3), array([1.0] * 3), text("1e-8"), floating(10.0), "epsilon is not a finite number"),
    (array([0.0] * 3), array([1.0] * 3), b"\x88", floating(10.0), "epsilon is not a finite number"),
])
def test_vecnormalize_statistics_that_cannot_be_right(tmp_path, mean, var, epsilon, clip, needle):
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(vecnormalize(mean, var, epsilon, clip))
    with pytest.raises(ModelFileError, match=needle) as caught:
        load_vecnormalize(path, 3)
    assert "vecnormalize.pkl" in caught.value.hint


def test_vecnormalize_without_clipping_still_loads(tmp_path):
    """clip_obs=np.inf turns VecNormalize's clipping off: the bundle clips at 1e5 std, the same policy."""
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(vecnormalize(array([0.0] * 3), array([4.0] * 3), floating(1e-8), floating(float("inf"))))
    assert load_vecnormalize(path, 3).clip == 1e5


def test_vecnormalize_statistics_through_the_cli(tmp_path):
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(vecnormalize(text("abc"), array([1.0] * 3), floating(1e-8), floating(10.0)))
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "--vecnormalize", str(path),
                   "-o", str(tmp_path / "b"))
    assert_one_line_error(proc, "obs_rms.mean is not an array of numbers", "--no-vecnormalize")


# --- the command line and the env ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["build", "calibrate", "report", "run"])
@pytest.mark.parametrize("value", ["-1", "4294967296", "x", "1.5"])
def test_a_seed_out_of_range_is_refused_by_every_command(tmp_path, command, value):
    target = str(EXAMPLE_MODEL) if command in ("build", "calibrate") else str(tmp_path)
    proc = run_cli(command, target, "--seed", value)
    assert_one_line_error(proc, "a seed is an integer from 0 to 4294967295")
    assert proc.returncode == 2


def test_env_kwargs_the_env_rejects(tmp_path):
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "--env-kwargs", '{"g": "x"}',
                   "-o", str(tmp_path / "b"), *FAST_BUILD)
    assert_one_line_error(proc, 'the env Pendulum-v1 (kwargs {"g": "x"}) failed', "rejects these kwargs")
    assert not (tmp_path / "b").exists()


NOT_ENV_CLASSES = ("os:getcwd", "builtins:dict", "json:JSONDecoder")


@pytest.fixture(scope="module")
def not_env_class_builds(tmp_path_factory):
    """Each build in one interpreter (the three fail alike, after the host stack's start-up)."""
    out = tmp_path_factory.mktemp("not-env-classes")
    procs = run_cli_batch([("build", str(EXAMPLE_MODEL), "--env", env, "-o", str(out / str(i)))
                           for i, env in enumerate(NOT_ENV_CLASSES)])
    return {env: (proc, out / str(i)) for i, (env, proc) in enumerate(zip(NOT_ENV_CLASSES, procs))}


@pytest.mark.parametrize("env", NOT_ENV_CLASSES)
def test_env_that_names_no_env_class(not_env_class_builds, env):
    proc, output = not_env_class_builds[env]
    assert_one_line_error(proc, f"the env {env} failed", "gymnasium.Env")
    assert not output.exists()


def test_a_bundle_with_a_boolean_format_version(tmp_path, built_bundle):
    bundle = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, bundle)
    document = json.loads((bundle / "manifest.json").read_text())
    for version in (True, 1.0):
        document["format_version"] = version
        (bundle / "manifest.json").write_text(json.dumps(document))
        proc = run_cli("run", str(bundle), "--device", "cpu")
        assert_one_line_error(proc, "format_version must be an integer")


# --- the disk: read-only, full, a full $TMPDIR ----------------------------------------------------------


def test_a_full_disk_is_a_one_line_error_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """ENOSPC injected where the build writes: one line naming the cause, no staging directory left."""
    import edgekit.host.loading
    from edgekit import cli

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(edgekit.host.loading, "load_agent", full)
    out = tmp_path / "b"
    code = cli.main(["build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "error: cannot write: No space left on device" in err and "  fix: free space" in err
    assert "edgekit bug" not in err and list(tmp_path.iterdir()) == []


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


_MOUNT_AND_BUILD = """mount -t tmpfs -o {options} tmpfs {mount} || exit 99
"$@"
code=$?
echo "left in {mount}: $(ls -A {mount} | grep -e '^edgekit-' -e '\\.partial-' | tr '\\n' ' ')"
exit $code
"""


def _build_in_namespace(tmp_path: Path, mount: Path, options: str, output: Path, tmpdir: Path | None = None
                        ) -> subprocess.CompletedProcess[str]:
    """A build in a private mount namespace where ``mount`` is a tmpfs with ``options``."""
    mount.mkdir(exist_ok=True)
    script = tmp_path / "mount.sh"
    script.write_text(_MOUNT_AND_BUILD.format(options=options, mount=mount))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmpdir or tmp_path)}
    return subprocess.run(["unshare", "-rm", "sh", str(script), sys.executable, "-m", "edgekit", "build",
                           str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "-o", str(output), *FAST_BUILD],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs unshare -rm to mount a tmpfs")


@pytest.mark.slow
@needs_mount
def test_a_read_only_output_directory(tmp_path):
    proc = _build_in_namespace(tmp_path, tmp_path / "ro", "ro,size=1m", tmp_path / "ro" / "out")
    assert_one_line_error(proc, "Read-only file system", "write the output elsewhere")


@pytest.mark.slow
@needs_mount
def test_a_disk_that_fills_up_during_the_build(tmp_path):
    """48 KiB for a bundle of about 100 KiB: the write fails part way."""
    proc = _build_in_namespace(tmp_path, tmp_path / "small", "size=48k", tmp_path / "small" / "out")
    assert_one_line_error(proc, "No space left on device", "free space")
    assert proc.stdout.strip().endswith("small:"), proc.stdout  # no staging directory, no scratch left


@pytest.mark.slow
@needs_mount
def test_a_full_tmpdir(tmp_path):
    """onnx2tf writes its SavedModel into $TMPDIR: a TensorFlow traceback before, one line now."""
    tmpdir = tmp_path / "tmp"
    proc = _build_in_namespace(tmp_path, tmpdir, "size=64k", tmp_path / "out", tmpdir=tmpdir)
    assert_one_line_error(proc, "No space left on device", "TMPDIR")
    assert "TensorSpec" not in proc.stderr and not (tmp_path / "out").exists()
    assert proc.stdout.strip().endswith("tmp:"), proc.stdout
