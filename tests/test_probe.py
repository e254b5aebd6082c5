"""Crash-safe model opening (edgekit.runtime.probe): no libedgetpu, however broken, takes edgekit down.

The libedgetpu files here are STAND-INS compiled in this session (tests/fake_libedgetpu.py): one that
segfaults in tflite_plugin_create_delegate, one that hangs there, one that returns NULL after reporting
an error, one that segfaults when loaded, and a do-nothing delegate whose model runs on the CPU kernels
(the success path and the cache; it claims no TPU execution). The "Edge TPU model" of each bundle is
its CPU model recorded again under that name (a stand-in; no compiler ran).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli
from fake_libedgetpu import EDGETPU_STANDIN, library_env

from edgekit.core.errors import BundleError, DeviceError
from edgekit.runtime import EdgePolicy, EdgeTPUFallbackWarning
from edgekit.runtime.interpreters import DeviceRequest, find_backend
from edgekit.runtime.probe import child_arguments, probe_cache_dir, probe_model

# behaviour -> (outcome, words the message must hold)
FAILING = {
    "SEGFAULT": ("crashed", ("SIGSEGV", "tflite_plugin_create_delegate")),
    "HANG": ("timed-out", ("no answer within 3 s", "tflite_plugin_create_delegate")),
    "NULL": ("no-delegate", ("no Edge TPU found (stand-in libedgetpu)",)),
    "CTOR": ("crashed", ("SIGSEGV while loading libedgetpu",)),
}
BUNDLE = "ppo-pendulum"


@pytest.fixture
def probe_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "probe-cache"
    monkeypatch.setenv("EDGEKIT_PROBE_CACHE", str(cache))
    return cache


def _use(monkeypatch, directory: Path, timeout: float = 3.0) -> None:
    for key, value in library_env(directory, timeout).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("EDGEKIT_LIBEDGETPU", raising=False)


def _entries(cache: Path, device: str | None = None) -> list[Path]:
    """The cache's entries (for ``device`` only: building a bundle probes its CPU model too)."""
    found = sorted(cache.glob("*.json")) if cache.is_dir() else []
    return [p for p in found if device is None or json.loads(p.read_text())["key"]["device"] == device]


@pytest.mark.parametrize("behaviour", sorted(FAILING))
def test_a_failing_libedgetpu_is_a_device_error_naming_the_pair(behaviour, fake_libedgetpu, edgetpu_bundle,
                                                                 probe_cache, monkeypatch):
    _use(monkeypatch, fake_libedgetpu[behaviour])
    model = edgetpu_bundle(BUNDLE) / EDGETPU_STANDIN
    outcome, words = FAILING[behaviour]
    for _attempt in range(2):  # a failure is never cached: the second start probes again
        result = probe_model(model, device="usb")
        assert not result.ok and result.outcome == outcome and result.seconds > 0, result
        error = result.error()
        assert isinstance(error, DeviceError)
        library = str(fake_libedgetpu[behaviour] / "libedgetpu.so.1")
        backend = find_backend()
        for needle in (library, f"{backend.name} {backend.version}", *words):
            assert needle in error.message, (needle, error.message)
        assert "device/README.md" in error.hint and "matched" in error.hint
        assert _entries(probe_cache, "usb") == []
    if behaviour == "HANG":
        assert result.seconds < 3 + 10  # killed at the timeout, not waited for


def test_the_do_nothing_standin_passes_and_is_cached_per_library_device_and_model(fake_libedgetpu, edgetpu_bundle,
                                                                                  probe_cache, monkeypatch,
                                                                                  tmp_path):
    _use(monkeypatch, fake_libedgetpu["NOOP"])
    bundle = edgetpu_bundle(BUNDLE)
    first = probe_model(bundle / EDGETPU_STANDIN, device="usb")
    assert first.ok and first.outcome == "ok" and first.error() is None
    assert len(_entries(probe_cache, "usb")) == 1
    again = probe_model(bundle / EDGETPU_STANDIN, device="usb")
    assert again.ok and again.cached and again.seconds == 0.0
    entry = json.loads(_entries(probe_cache, "usb")[0].read_text())
    assert entry["ok"] is True and entry["key"]["device"] == "usb" and len(entry["key"]["libedgetpu_sha256"]) == 64
    assert entry["key"]["interpreter_version"] == find_backend().version
    # another device, the CPU model, another build of the library: each probed once more
    assert probe_model(bundle / EDGETPU_STANDIN, device="pci:0").outcome == "ok"
    cpu = probe_model(bundle / "model_int8.tflite", device="cpu")
    assert cpu.ok and _entries(probe_cache, "cpu")
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    (rebuilt / "libedgetpu.so.1").write_bytes((fake_libedgetpu["NOOP"] / "libedgetpu.so.1").read_bytes() + b"\0")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(rebuilt))
    assert probe_model(bundle / EDGETPU_STANDIN, device="usb").outcome == "ok"
    assert len(_entries(probe_cache, "usb")) == 2 and len(_entries(probe_cache, "pci:0")) == 1
    assert probe_model(bundle / EDGETPU_STANDIN, device="usb").cached


def test_cache_location_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEKIT_PROBE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert probe_cache_dir() == tmp_path / "xdg" / "edgekit" / "probes"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert probe_cache_dir() == tmp_path / "home" / ".cache" / "edgekit" / "probes"


def test_an_unwritable_cache_only_costs_the_next_probe(built_bundle, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("EDGEKIT_PROBE_CACHE", str(blocker / "probes"))
    model = built_bundle(BUNDLE).bundle_dir / "model_int8.tflite"
    assert probe_model(model).outcome == "ok" and probe_model(model).outcome == "ok"


def test_edgekit_libedgetpu_overrides_the_loader_search(fake_libedgetpu, edgetpu_bundle, probe_cache, monkeypatch,
                                                        tmp_path):
    _use(monkeypatch, fake_libedgetpu["NOOP"])
    model = edgetpu_bundle(BUNDLE) / EDGETPU_STANDIN
    monkeypatch.setenv("EDGEKIT_LIBEDGETPU", str(fake_libedgetpu["SEGFAULT"] / "libedgetpu.so.1"))
    assert probe_model(model, device="usb").outcome == "crashed"
    monkeypatch.setenv("EDGEKIT_LIBEDGETPU", str(tmp_path / "nowhere.so"))
    missing = probe_model(model, device="usb")
    assert missing.outcome == "no-library" and "EDGEKIT_LIBEDGETPU" in missing.error().message


@pytest.mark.parametrize("behaviour", sorted(FAILING))
def test_edgepolicy_load_falls_back_on_auto_and_refuses_an_explicit_device(behaviour, fake_libedgetpu,
                                                                          edgetpu_bundle, probe_cache, monkeypatch):
    """In this very process: had the library been loaded here, the test run would have died with it."""
    _use(monkeypatch, fake_libedgetpu[behaviour], timeout=2)
    bundle = edgetpu_bundle(BUNDLE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = EdgePolicy.load(bundle, device="auto")
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, EdgeTPUFallbackWarning)]
    assert policy.device == "cpu" and len(fallbacks) == 1
    assert str(fake_libedgetpu[behaviour]) in fallbacks[0] and "running the int8 model on the CPU" in fallbacks[0]
    assert policy.predict([1.0, 0.0, 0.3]).shape == (1,)
    for device in ("usb", "usb:0", "pci"):
        with pytest.raises(DeviceError, match="libedgetpu"):
            EdgePolicy.load(bundle, device=device)


def test_the_do_nothing_standin_opens_an_edgetpu_policy(fake_libedgetpu, edgetpu_bundle, built_bundle, probe_cache,
                                                        monkeypatch):
    _use(monkeypatch, fake_libedgetpu["NOOP"])
    policy = EdgePolicy.load(edgetpu_bundle(BUNDLE), device="usb")
    assert policy.device == "usb" and policy.model_file == EDGETPU_STANDIN and policy.fast_path
    cpu = EdgePolicy.load(built_bundle(BUNDLE).bundle_dir, device="cpu")
    with np.load(built_bundle(BUNDLE).bundle_dir / "calibration.npz") as data:
        obs = data["held_out"][:50]
    np.testing.assert_array_equal(policy.predict(obs), cpu.predict(obs))  # CPU kernels behind the stand-in
    assert _entries(probe_cache)  # both models' probes remembered


def test_a_model_that_fails_its_probe_is_a_bundle_error(built_bundle, tmp_path, probe_cache):
    """The CPU model's probe: a model whose invoke raises is refused at load with one clean error."""
    from hostile_models import swapped_op_bundle

    bundle = swapped_op_bundle(built_bundle(BUNDLE).bundle_dir, tmp_path / "sqrt", "TANH", "SQRT")
    with pytest.raises(BundleError, match="failed in a probe while invoking it") as info:
        EdgePolicy.load(bundle, device="cpu")
    assert "ai_edge_litert" in info.value.message
    sqrt_sha = json.loads((bundle / "manifest.json").read_text())["files"]["model_int8.tflite"]
    assert not [p for p in _entries(probe_cache) if json.loads(p.read_text())["key"]["model_sha256"] == sqrt_sha]


def test_the_probe_child_imports_numpy_and_the_interpreter_only(fake_libedgetpu, edgetpu_bundle):
    """The child that opens models first: the standard library, numpy, the interpreter; no edgekit."""
    from edgekit.runtime.libedgetpu import library_file

    backend = find_backend()
    bundle = edgetpu_bundle(BUNDLE)
    for model, request, library in (
            (bundle / "model_int8.tflite", DeviceRequest("cpu"), None),
            (bundle / EDGETPU_STANDIN, DeviceRequest("usb"),
             library_file(str(fake_libedgetpu["NOOP"] / "libedgetpu.so.1")))):
        cmd = child_arguments(backend, model, request, library, report_modules=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        modules = set(json.loads(proc.stdout.strip().splitlines()[-1])["modules"])
        outside = sorted(m for m in modules - set(sys.stdlib_module_names) if not m.startswith("_"))
        assert outside == sorted(["numpy", backend.name]), outside
        assert "edgekit" not in modules


# --- every command, every failing library, auto and explicit ----------------------------------------------

COMMANDS = {
    "episodes": ("run", "{bundle}", "--env", "Pendulum-v1", "--episodes", "1"),
    "serve": ("run", "{bundle}", "--serve", "stdio"),
    "verify": ("verify", "{bundle}"),
    "bench": ("bench", "{bundle}", "--iterations", "10"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("behaviour", sorted(FAILING))
def test_no_command_dies_with_a_failing_libedgetpu(command, behaviour, fake_libedgetpu, edgetpu_bundle, tmp_path):
    bundle = edgetpu_bundle(BUNDLE)
    env = {**library_env(fake_libedgetpu[behaviour], timeout=2), "EDGEKIT_PROBE_CACHE": str(tmp_path / "cache")}
    args = [a.format(bundle=bundle) for a in COMMANDS[command]]
    stdin = "[1.0, 0.0, 0.3]\n" if command == "serve" else None
    library = str(fake_libedgetpu[behaviour] / "libedgetpu.so.1")
    auto = run_cli(*args, "--device", "auto", stdin=stdin, env=env, timeout=180)
    assert auto.returncode == 0, auto.stderr
    warnings_seen = [line for line in auto.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings_seen) == 1, auto.stderr
    assert library in warnings_seen[0] and "error:" not in auto.stderr
    if command == "serve":
        assert "action" in json.loads(auto.stdout)
    explicit = run_cli(*args, "--device", "usb", stdin=stdin, env=env, timeout=180)
    errors = [line for line in explicit.stderr.splitlines() if line.startswith("error:")]
    assert explicit.returncode == 1 and len(errors) == 1 and library in errors[0], explicit.stderr
    assert "Traceback" not in explicit.stderr and "  fix: " in explicit.stderr


def test_bench_default_devices_note_the_failing_edgetpu(fake_libedgetpu, edgetpu_bundle, tmp_path):
    env = {**library_env(fake_libedgetpu["SEGFAULT"]), "EDGEKIT_PROBE_CACHE": str(tmp_path / "cache")}
    proc = run_cli("bench", str(edgetpu_bundle(BUNDLE)), "--iterations", "10", "--json", env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [r["device"] for r in data["results"]] == ["cpu"]
    assert len(data["unavailable"]) == 2 and all("SIGSEGV" in note for note in data["unavailable"])


def test_no_libedgetpu_at_all_is_said_without_a_probe(edgetpu_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    monkeypatch.delenv("EDGEKIT_LIBEDGETPU", raising=False)
    if shutil.which("ldconfig") or Path("/sbin/ldconfig").exists():
        from edgekit.runtime.libedgetpu import _loader_cache

        if _loader_cache("libedgetpu.so.1"):
            pytest.skip("a real libedgetpu is installed here")
    with pytest.raises(DeviceError, match="libedgetpu.so.1 is not installed"):
        EdgePolicy.load(edgetpu_bundle(BUNDLE), device="usb")


def test_the_probe_and_the_server_open_the_bytes_that_were_hashed(built_bundle, tmp_path, probe_cache):
    """A file swapped after the manifest check: the child refuses what it reads, and the serving process
    opens the bytes it hashed, never re-reading the path."""
    from edgekit.runtime.probe import run_probe

    model = built_bundle(BUNDLE).bundle_dir / "model_int8.tflite"
    result = run_probe(find_backend(), model, "0" * 64, DeviceRequest("cpu"), None)
    assert not result.ok and "changed after the parent checked it" in result.detail
    bundle = tmp_path / "bundle"
    shutil.copytree(built_bundle(BUNDLE).bundle_dir, bundle)
    policy = EdgePolicy.load(bundle, device="cpu")
    expected = policy.predict([1.0, 0.0, 0.3])
    (bundle / "model_int8.tflite").write_bytes(b"swapped")  # the interpreter holds the checked bytes
    np.testing.assert_array_equal(policy.predict([1.0, 0.0, 0.3]), expected)


def test_a_probe_that_cannot_start_is_a_device_error_and_a_launcher_runs_it(built_bundle, tmp_path, monkeypatch,
                                                                            probe_cache):
    """Under a user-mode emulator without binfmt_misc the child cannot be exec'd (ENOEXEC): one clean error
    naming EDGEKIT_PROBE_LAUNCHER, never an OSError; with a launcher the child runs under it."""
    bundle = built_bundle(BUNDLE).bundle_dir
    model = bundle / "model_int8.tflite"
    monkeypatch.setenv("EDGEKIT_PROBE_CACHE", str(tmp_path / "empty-cache"))  # building it probed it
    monkeypatch.setenv("EDGEKIT_PROBE_LAUNCHER", str(tmp_path / "no-such-emulator"))
    result = probe_model(model, use_cache=False)
    assert result.outcome == "not-started" and "EDGEKIT_PROBE_LAUNCHER" in result.error().hint
    with pytest.raises(DeviceError, match="cannot start the process that opens model_int8.tflite first"):
        EdgePolicy.load(bundle, device="cpu")
    marker = tmp_path / "launched"
    launcher = tmp_path / "launcher.sh"
    launcher.write_text(f'#!/bin/sh\ntouch {marker}\nexec "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("EDGEKIT_PROBE_LAUNCHER", str(launcher))
    assert probe_model(model, use_cache=False).ok and marker.exists()


def test_a_child_that_exits_127_before_its_first_line_was_not_started(built_bundle, tmp_path, monkeypatch):
    """Exit status 127 before the child's first line means it never ran: glibc's posix_spawn reports a failed
    exec that way (Python 3.13's subprocess under a user-mode emulator without binfmt_misc: Trixie), and so
    do env or a shell for a missing command. It is the launcher's DeviceError, never a damaged model."""
    model = built_bundle(BUNDLE).bundle_dir / "model_int8.tflite"
    monkeypatch.setenv("EDGEKIT_PROBE_LAUNCHER", f"env {tmp_path / 'no-such-emulator'}")
    result = probe_model(model, use_cache=False)
    assert result.outcome == "not-started" and "127" in result.detail, result
    error = result.error()
    assert isinstance(error, DeviceError) and "EDGEKIT_PROBE_LAUNCHER" in error.hint
