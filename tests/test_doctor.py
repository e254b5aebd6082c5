"""`edgekit doctor` on laid-out system roots: a Raspberry Pi 5 with a Coral attached, without a Pi or a plug.

Each root is a directory written here like the files a Pi has (etc/os-release, sys/bus/usb/devices,
dev/bus/usb, proc/device-tree/model, boot/firmware/config.txt, var/lib/dpkg, udev rules), read through
EDGEKIT_SYSROOT. The tests run as any user: who may open the device node is judged from its mode and group
against the uid and groups given, not by opening it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from edgekit.device.diagnosis import FAIL, OK, WARN, diagnose, requirement_met, verdict
from edgekit.device.facts import InstalledInterpreter, SystemRoot, gather
from edgekit.device.pairs import load_table

PLUGDEV = 46
PI_UID = 1000
TFLITE_2171 = InstalledInterpreter("tflite_runtime", "tflite-runtime", "2.17.1")
LITERT = InstalledInterpreter("ai_edge_litert", "ai-edge-litert", "2.3.0")
LIB = "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1"


def _write(root: Path, path: str, text: str | bytes, mode: int | None = None) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    if mode is not None:
        target.chmod(mode)
    return target


def make_pi(root: Path, codename: str = "bookworm", model: str = "Raspberry Pi 5 Model B Rev 1.0",
            usb: tuple[str, str] | None = ("18d1", "9302"), speed: str = "5000", node_gid: int = PLUGDEV,
            libedgetpu_version: str | None = "16.0tf2.17.1-1", config: str = "# defaults\narm_64bit=1\n",
            members: str = "pi", udev_rule: bool = True) -> Path:
    """A Raspberry Pi OS root as the doctor reads it."""
    version = {"bookworm": "12", "trixie": "13"}.get(codename, "11")
    _write(root, "/etc/os-release", f'PRETTY_NAME="Debian GNU/Linux {version} ({codename})"\nID=debian\n'
                                    f"VERSION_CODENAME={codename}\n")
    _write(root, "/proc/sys/kernel/arch", "aarch64\n")
    _write(root, "/proc/device-tree/model", model.encode() + b"\x00")
    _write(root, "/boot/firmware/config.txt", config)
    _write(root, "/etc/group", f"root:x:0:\nplugdev:x:{PLUGDEV}:{members}\npi:x:{PI_UID}:\n")
    _write(root, "/etc/passwd", f"root:x:0:0::/root:/bin/bash\npi:x:{PI_UID}:{PI_UID}::/home/pi:/bin/bash\n")
    if usb:
        dev = root / "sys/bus/usb/devices/2-1"
        for name, value in (("idVendor", usb[0]), ("idProduct", usb[1]), ("busnum", "2"), ("devnum", "3"),
                            ("speed", speed)):
            _write(root, f"/sys/bus/usb/devices/2-1/{name}", value + "\n")
        node = _write(root, "/dev/bus/usb/002/003", b"", mode=0o664)
        os.chown(node, 0, node_gid) if os.geteuid() == 0 else None
        assert dev.is_dir()
    _write(root, "/sys/bus/usb/devices/usb1/idVendor", "1d6b\n")  # a root hub: not a Coral
    _write(root, "/sys/bus/usb/devices/usb1/idProduct", "0002\n")
    if libedgetpu_version:
        _write(root, "/var/lib/dpkg/status", f"Package: bash\nStatus: install ok installed\nVersion: 5.2\n\n"
                                             f"Package: libedgetpu1-std\nStatus: install ok installed\n"
                                             f"Architecture: arm64\nVersion: {libedgetpu_version}\n")
        _write(root, "/var/lib/dpkg/info/libedgetpu1-std:arm64.list", f"/.\n/usr/lib/aarch64-linux-gnu\n{LIB}\n")
        _write(root, LIB, b"\x7fELF stand-in, never loaded")
    if udev_rule:
        _write(root, "/lib/udev/rules.d/60-libedgetpu1-std.rules",
               'SUBSYSTEM=="usb",ATTRS{idVendor}=="1a6e",GROUP="plugdev"\n'
               'SUBSYSTEM=="usb",ATTRS{idVendor}=="18d1",GROUP="plugdev"\n')
    return root


def facts_of(root: Path, interpreters=(TFLITE_2171,), numpy: str = "1.26.4", python: str = "3.11.2",
             gids=(PI_UID, PLUGDEV), env=None):
    facts = gather(SystemRoot(root), env=env or {}, uid=PI_UID, gids=gids)
    return dataclasses.replace(facts, interpreters=tuple(interpreters), numpy=numpy,
                               python=dataclasses.replace(facts.python, version=python))


def by_topic(findings, topic):
    return [f for f in findings if f.topic == topic]


def one(findings, topic):
    found = by_topic(findings, topic)
    assert len(found) == 1, found
    return found[0]


needs_root_for_chown = pytest.mark.skipif(os.geteuid() != 0, reason="the node's group is set with chown (root)")


@needs_root_for_chown
def test_a_pi5_bookworm_with_the_matched_pair_and_a_coral_passes(tmp_path):
    findings = diagnose(facts_of(make_pi(tmp_path)), load_table())
    assert verdict(findings), [f for f in findings if f.status == FAIL]
    assert one(findings, "tested pair").detail.startswith("bookworm-py3.11-arm64-tf2.17.1")
    assert one(findings, "libedgetpu").status == OK and LIB in one(findings, "libedgetpu").detail
    assert one(findings, "interpreter").status == OK
    coral = one(findings, "Coral USB Accelerator")
    assert coral.status == OK and "18d1:9302 (firmware loaded)" in coral.detail
    assert one(findings, "USB access").status == OK and "pi may open it" in one(findings, "USB access").detail
    assert one(findings, "udev rule").status == OK
    assert one(findings, "board").detail == "Raspberry Pi 5 Model B Rev 1.0"
    power = one(findings, "USB current")  # no 5 A supply reported and no usb_max_current_enable
    assert power.status == WARN and "600 mA" in power.detail and "900 mA" in power.detail
    assert "usb_max_current_enable=1" in power.fix and "/boot/firmware/config.txt" in power.fix


@needs_root_for_chown
def test_trixie_with_python_313_finds_its_pair(tmp_path):
    facts = facts_of(make_pi(tmp_path, codename="trixie"), python="3.13.5", numpy="2.2.4")
    findings = diagnose(facts, load_table())
    assert one(findings, "tested pair").detail.startswith("trixie-py3.13-arm64-tf2.17.1")
    assert verdict(findings)


def test_the_usb_current_is_fine_with_the_flag_or_a_5a_supply(tmp_path):
    root = make_pi(tmp_path / "a", config="[pi5]\nusb_max_current_enable=1\n")
    assert one(diagnose(facts_of(root), load_table()), "USB current").status == OK
    root = make_pi(tmp_path / "b", config="#usb_max_current_enable=1\n")
    assert one(diagnose(facts_of(root), load_table()), "USB current").status == WARN  # commented out
    root = make_pi(tmp_path / "c")
    _write(root, "/proc/device-tree/chosen/power/max_current", (5000).to_bytes(4, "big"))
    power = one(diagnose(facts_of(root), load_table()), "USB current")
    assert power.status == OK and "5 A supply" in power.detail
    root = make_pi(tmp_path / "d", model="Raspberry Pi 4 Model B Rev 1.5")
    assert by_topic(diagnose(facts_of(root), load_table()), "USB current") == []


def test_coral_apt_libedgetpu_is_the_known_crash(tmp_path):
    findings = diagnose(facts_of(make_pi(tmp_path, libedgetpu_version="16.0")), load_table())
    lib = one(findings, "libedgetpu")
    assert lib.status == FAIL and "SIGSEGV" in lib.detail and "TensorFlow 2.5" in lib.detail
    assert "setup-pi.sh" in lib.fix and not verdict(findings)


def test_an_interpreter_from_another_tensorflow_fails_and_names_the_fix(tmp_path):
    root = make_pi(tmp_path)
    findings = diagnose(facts_of(root, interpreters=(LITERT,), numpy="2.4.0"), load_table())
    interp = one(findings, "interpreter")
    assert interp.status == FAIL and "tflite-runtime 2.17.1" in interp.detail and "setup-pi.sh" in interp.fix
    # the pair's interpreter is there too, but ai-edge-litert comes first in edgekit's order
    findings = diagnose(facts_of(root, interpreters=(LITERT, TFLITE_2171)), load_table())
    interp = one(findings, "interpreter")
    assert interp.status == FAIL and "--interpreter tflite_runtime" in interp.fix


def test_numpy_2_with_the_bookworm_wheel_fails(tmp_path):
    findings = diagnose(facts_of(make_pi(tmp_path), numpy="2.1.0"), load_table())
    assert one(findings, "numpy").status == FAIL and "numpy<2" in one(findings, "numpy").detail


@pytest.mark.parametrize("version,requirement,expected", [
    ("1.26.4", "numpy<2", True), ("2.0.1", "numpy<2", False), ("2.2.4", "numpy>=2.1", True),
    ("2.0.2", "numpy>=2.1", False), ("1.26", "numpy==1.26", True), ("1.0", "numpy~=1.0", None)])
def test_requirement_met(version, requirement, expected):
    assert requirement_met(version, requirement) is expected


@needs_root_for_chown
def test_firmware_not_loaded_yet_is_still_the_accelerator(tmp_path):
    findings = diagnose(facts_of(make_pi(tmp_path, usb=("1a6e", "089a"))), load_table())
    assert "1a6e:089a (waiting for its firmware)" in one(findings, "Coral USB Accelerator").detail


def test_no_accelerator_fails(tmp_path):
    findings = diagnose(facts_of(make_pi(tmp_path, usb=None)), load_table())
    coral = one(findings, "Coral USB Accelerator")
    assert coral.status == FAIL and "USB 3" in coral.fix and not verdict(findings)


@needs_root_for_chown
def test_a_usb2_port_is_a_warning(tmp_path):
    coral = one(diagnose(facts_of(make_pi(tmp_path, speed="480")), load_table()), "Coral USB Accelerator")
    assert coral.status == WARN and "USB 2" in coral.detail


@needs_root_for_chown
@pytest.mark.parametrize("members,gids,node_gid,fix", [
    ("", (PI_UID,), PLUGDEV, "sudo usermod -aG plugdev pi"),  # not in plugdev
    ("pi", (PI_UID,), PLUGDEV, "log out and in again"),  # added, but this login predates it
    ("pi", (PI_UID, PLUGDEV), 0, "replug"),  # the node is root:root: the rule did not apply
])
def test_who_may_open_the_accelerator(tmp_path, members, gids, node_gid, fix):
    root = make_pi(tmp_path, members=members, node_gid=node_gid)
    access = one(diagnose(facts_of(root, gids=gids), load_table()), "USB access")
    assert access.status == FAIL and fix in access.fix, access


def test_a_missing_udev_rule_is_named(tmp_path):
    rule = one(diagnose(facts_of(make_pi(tmp_path, udev_rule=False)), load_table()), "udev rule")
    assert rule.status == WARN and "99-edgetpu-accelerator.rules" in rule.fix


def test_edgekit_libedgetpu_names_the_library(tmp_path):
    root = make_pi(tmp_path, libedgetpu_version=None)
    lib = one(diagnose(facts_of(root), load_table()), "libedgetpu")
    assert lib.status == FAIL and "not found" in lib.detail and "EDGEKIT_LIBEDGETPU" in lib.fix
    custom = _write(tmp_path, "/opt/lib/libedgetpu.so.1", b"stand-in")
    lib = one(diagnose(facts_of(root, env={"EDGEKIT_LIBEDGETPU": str(custom)}), load_table()), "libedgetpu")
    assert lib.status == WARN and str(custom) in lib.detail and "(EDGEKIT_LIBEDGETPU)" in lib.detail


def test_an_unknown_system_fails_naming_the_supported_ones(tmp_path):
    findings = diagnose(facts_of(make_pi(tmp_path, codename="bullseye"), python="3.9.2"), load_table())
    pair = one(findings, "tested pair")
    assert pair.status == FAIL and "bookworm (Python 3.11, arm64); trixie (Python 3.13, arm64)" in pair.fix


def _heavy_free_doctor(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = ("import sys; from edgekit.cli import main; code = main(['doctor', *sys.argv[1:]]); "
            "heavy = sorted(m for m in ('torch', 'tensorflow', 'gymnasium', 'stable_baselines3', 'ai_edge_litert', "
            "'tflite_runtime', 'onnx') if m in sys.modules); print('HEAVY', heavy, file=sys.stderr); sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEKIT_SYSROOT": str(root)}
    env.pop("EDGEKIT_LIBEDGETPU", None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


def test_the_command_on_a_laid_out_pi5_prints_each_finding_and_its_fix(tmp_path):
    root = make_pi(tmp_path)
    proc = _heavy_free_doctor(root)
    # This host's interpreter (not the pair's tflite-runtime 2.17.1) fails the check: exit 1 with the fix.
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "HEAVY []" in proc.stderr  # no interpreter, TensorFlow, torch, SB3 or gymnasium imported
    out = proc.stdout
    assert "Debian GNU/Linux 12 (bookworm)" in out and "Raspberry Pi 5 Model B Rev 1.0" in out
    assert "[warn] USB current: Pi 5 limits USB devices to 600 mA" in out
    assert "libedgetpu1-std 16.0tf2.17.1-1" in out and "18d1:9302 (firmware loaded)" in out
    assert "fix: " in out and out.rstrip().splitlines()[-1].startswith("result: the Edge TPU path would not work")
    proc = _heavy_free_doctor(root, "--json")
    data = json.loads(proc.stdout)
    assert data["edgetpu_path_works"] is False
    assert {"tested pair", "interpreter", "libedgetpu", "Coral USB Accelerator", "USB current"} <= {
        f["topic"] for f in data["findings"]}


def test_a_bundle_without_an_edge_tpu_model_fails(built_bundle, tmp_path):
    proc = run_cli("doctor", str(built_bundle("ppo-pendulum").bundle_dir), env={"EDGEKIT_SYSROOT": str(tmp_path)})
    assert proc.returncode == 1
    assert "has no Edge TPU model" in proc.stdout and "edgekit compile" in proc.stdout


def test_a_missing_bundle_is_one_finding(tmp_path):
    proc = run_cli("doctor", str(tmp_path / "nope"), env={"EDGEKIT_SYSROOT": str(tmp_path)})
    assert proc.returncode == 1 and "[FAIL] bundle:" in proc.stdout and "Traceback" not in proc.stderr


# --- the child-process probe of a bundle's models ---------------------------------------------------------
# The libedgetpu files are the STAND-INS the runtime tests build (tests/fake_libedgetpu.py), and the bundle's
# "Edge TPU model" is its CPU model recorded again under that name: no compiler ran and no TPU executes
# anything; the do-nothing stand-in's delegate claims no node, so its model runs on the CPU kernels.

PROBE_FAILURES = {  # stand-in -> words the Edge TPU probe's finding must hold
    "SEGFAULT": ("SIGSEGV", "tflite_plugin_create_delegate"),
    "HANG": ("no answer within 3 s", "tflite_plugin_create_delegate"),
    "NULL": ("no Edge TPU found (stand-in libedgetpu)", "(usb)"),
}


def _probe_env(tmp_path: Path, library_dir: Path) -> dict[str, str]:
    from fake_libedgetpu import library_env

    return {**library_env(library_dir, timeout=3), "EDGEKIT_SYSROOT": str(tmp_path / "root"),
            "EDGEKIT_PROBE_CACHE": str(tmp_path / "probe-cache"), "EDGEKIT_LIBEDGETPU": ""}


def _doctor_json(bundle: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = run_cli("doctor", str(bundle), "--json", *args, env=env, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, {f["topic"]: f for f in json.loads(proc.stdout)["findings"]}


@pytest.mark.parametrize("behaviour", sorted(PROBE_FAILURES))
def test_a_failing_libedgetpu_fails_the_probe_with_the_fix(behaviour, fake_libedgetpu, edgetpu_bundle, tmp_path):
    """The doctor survives the library (it is loaded in a child only) and names it, what happened and the fix."""
    proc, findings = _doctor_json(edgetpu_bundle("ppo-pendulum"), _probe_env(tmp_path, fake_libedgetpu[behaviour]))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    probe = findings["Edge TPU probe"]
    assert probe["status"] == FAIL, probe
    for needle in (str(fake_libedgetpu[behaviour] / "libedgetpu.so.1"), *PROBE_FAILURES[behaviour]):
        assert needle in probe["detail"], (needle, probe)
    assert "matched" in probe["fix"] and "device/README.md" in probe["fix"]
    assert findings["CPU model probe"]["status"] == OK  # the model --device auto falls back to
    assert not list((tmp_path / "probe-cache").glob("*.json"))  # the doctor probes afresh and caches nothing


def test_the_do_nothing_standin_passes_the_probe(fake_libedgetpu, edgetpu_bundle, tmp_path):
    """The success path, with a stand-in that drives no TPU: the finding says what the probe did, no more."""
    env = _probe_env(tmp_path, fake_libedgetpu["NOOP"])
    proc, findings = _doctor_json(edgetpu_bundle("ppo-pendulum"), env, "--device", "pci:0")
    probe = findings["Edge TPU probe"]
    assert probe["status"] == OK, probe
    library = str(fake_libedgetpu["NOOP"] / "libedgetpu.so.1")
    assert library in probe["detail"] and "pci:0" in probe["detail"] and "ran once" in probe["detail"]
    assert "in a child process" in probe["detail"]
    assert findings["CPU model probe"]["status"] == OK
    proc = run_cli("doctor", str(edgetpu_bundle("ppo-pendulum")), env=env, timeout=180)
    assert "[ok  ] Edge TPU probe: " in proc.stdout and "[ok  ] CPU model probe: " in proc.stdout


@pytest.mark.parametrize("behaviour,code", [("NOOP", 0), ("SEGFAULT", 1), ("NULL", 1)])
def test_the_probe_decides_the_exit_status(behaviour, code, fake_libedgetpu, edgetpu_bundle, tmp_path,
                                           monkeypatch, capsys):
    """With every other check passing, the probe alone makes the doctor exit 0 or 1 (in this very process:
    had the library been loaded here, the test run would have died with it)."""
    from edgekit import cli
    from edgekit.device import diagnosis

    for key, value in _probe_env(tmp_path, fake_libedgetpu[behaviour]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(diagnosis, "diagnose", lambda facts, table: [])  # a machine where all else is right
    assert cli.main(["doctor", str(edgetpu_bundle("ppo-pendulum"))]) == code
    out = capsys.readouterr().out
    if code:
        assert "[FAIL] Edge TPU probe: " in out and "       fix: " in out and "matched pairs" in out
        assert out.rstrip().splitlines()[-1].startswith("result: the Edge TPU path would not work here (1 problem")
    else:
        assert out.rstrip().splitlines()[-1] == "result: nothing stops the Edge TPU path here"


def test_a_crafted_cpu_model_is_reported(fake_libedgetpu, edgetpu_bundle, tmp_path):
    """A CPU model whose op codes were swapped passes the structure check and fails when invoked: the
    probe finds it (EdgePolicy would refuse it too), while the Edge TPU model opens."""
    from hostile_models import swapped_op_bundle

    crafted = swapped_op_bundle(edgetpu_bundle("ppo-pendulum"), tmp_path / "sqrt", "TANH", "SQRT")
    proc, findings = _doctor_json(crafted, _probe_env(tmp_path, fake_libedgetpu["NOOP"]))
    cpu = findings["CPU model probe"]
    assert proc.returncode == 1 and cpu["status"] == FAIL, cpu
    assert "model_int8.tflite failed in a probe while invoking it" in cpu["detail"] and "rebuild" in cpu["fix"]
    assert findings["Edge TPU probe"]["status"] == OK  # its stand-in file is the unaltered CPU model


def test_an_altered_model_is_refused_before_any_probe(fake_libedgetpu, edgetpu_bundle, tmp_path):
    import shutil

    from fake_libedgetpu import EDGETPU_STANDIN

    bundle = tmp_path / "altered"
    shutil.copytree(edgetpu_bundle("ppo-pendulum"), bundle)
    (bundle / EDGETPU_STANDIN).write_bytes((bundle / EDGETPU_STANDIN).read_bytes() + b"\0")
    proc, findings = _doctor_json(bundle, _probe_env(tmp_path, fake_libedgetpu["SEGFAULT"]))
    probe = findings["Edge TPU probe"]
    assert proc.returncode == 1 and probe["status"] == FAIL and EDGETPU_STANDIN in probe["detail"], probe
    assert "SIGSEGV" not in probe["detail"]  # the altered file was not handed to the library


@pytest.mark.parametrize("device", ["cpu", "tpu", "usb:x"])
def test_device_must_name_an_edge_tpu(device, built_bundle, tmp_path):
    proc = run_cli("doctor", str(built_bundle("ppo-pendulum").bundle_dir), "--device", device,
                   env={"EDGEKIT_SYSROOT": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "usb" in proc.stderr, proc.stderr
