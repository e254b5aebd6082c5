"""device/setup-pi.sh on this host: pair selection, files instead of downloads, checksums, and what it installs.

The host is not a Pi, so the install flow runs as ``--dry-run`` (apt, downloads, groups printed, not run)
with a STAND-IN python that records every ``pip`` and ``venv`` command instead of running it, and runs
everything else (the pair table, ``edgekit doctor``) with this Python. Pair files are stand-ins too: a
Debian package built here with ``dpkg-deb`` and an empty wheel, named as such, under a stand-in pair table
for this host's Python and architecture (``--pairs``). The real install, with real wheels in emulated
Raspberry Pi OS roots, is tests/test_pi_emulated.py.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

SETUP_PI = REPO / "device" / "setup-pi.sh"
HOST_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recording_python(tmp_path: Path) -> tuple[Path, Path]:
    """A STAND-IN python: venv and pip commands are logged (pip wheel writes an empty wheel), the rest runs."""
    log = tmp_path / "pip.log"
    script = tmp_path / "standin-python"
    script.write_text(f"""#!/bin/bash
# STAND-IN python written by edgekit's tests: records venv/pip commands, runs the rest with the real python.
if [[ "$1" == "-m" && "$2" == "venv" ]]; then
    dir="${{@: -1}}"; mkdir -p "$dir/bin"; cp "{script}" "$dir/bin/python"; : > "$dir/bin/edgekit"; exit 0
fi
if [[ "$1" == "-m" && "$2" == "pip" ]]; then
    printf '%s\\n' "${{*:3}}" >> "{log}"
    if [[ "$3" == "wheel" ]]; then
        while [[ $# -gt 0 && "$1" != "-w" ]]; do shift; done
        {sys.executable} -c "import zipfile, sys; zipfile.ZipFile(sys.argv[1], 'w').close()" \\
            "$2/edgekit_sb3-0.1.0-py3-none-any.whl"
    fi
    exit 0
fi
if [[ "$1" == */bin/edgekit ]]; then shift; exec env PYTHONPATH="{REPO}" "{sys.executable}" -m edgekit "$@"; fi
exec "{sys.executable}" "$@"
""")
    script.chmod(0o755)
    return script, log


def _os_release(tmp_path: Path, codename: str) -> Path:
    path = tmp_path / f"os-release-{codename}"
    path.write_text(f'PRETTY_NAME="Debian GNU/Linux ({codename})"\nID=debian\nVERSION_CODENAME={codename}\n')
    return path


def _standin_deb(tmp_path: Path, package: str = "libedgetpu1-std", version: str = "16.0tf2.17.1-1") -> Path:
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb not found (a Debian-based host builds the stand-in package)")
    tree = tmp_path / "deb-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: edgekit tests <none@invalid>\n"
        "Description: STAND-IN for libedgetpu written by edgekit's tests (holds no library)\n")
    out = tmp_path / f"standin-{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(tree), str(out)], check=True, capture_output=True)
    return out


def _standin_wheel(tmp_path: Path) -> Path:
    wheel = tmp_path / "tflite_runtime-2.17.1-py3-none-any.whl"  # empty: a STAND-IN, installed by no one here
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("standin.txt", "a stand-in for the pair's interpreter wheel, written by edgekit's tests\n")
    return wheel


def _standin_table(tmp_path: Path, deb: Path, wheel: Path, deb_sha: str | None, wheel_sha: str | None) -> Path:
    """The shipped bookworm pair, re-keyed to this host (Python, architecture) and to the stand-in files."""
    data = json.loads((REPO / "edgekit" / "device" / "pairs.json").read_text())
    pair = data["pairs"][0]
    pair.update(id="standin-host-pair", python=HOST_PYTHON, arch=platform.machine())
    std = pair["libedgetpu"]["std"]
    std.update(url=std["url"].rsplit("/", 1)[0] + "/" + std["file"], sha256=deb_sha)
    pair["interpreter"].update(file=wheel.name, url="https://example.invalid/" + wheel.name, sha256=wheel_sha,
                               requires=["numpy<3"])
    data["pairs"] = [pair]
    table = tmp_path / "standin-pairs.json"
    table.write_text(json.dumps(data))
    return table


def _setup(*args: str, cwd: Path = REPO, script: Path = SETUP_PI) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def _dry_run(tmp_path: Path, *extra: str, deb_sha: str | None = "match", wheel_sha: str | None = "match"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    python, log = _recording_python(tmp_path)
    deb, wheel = _standin_deb(tmp_path), _standin_wheel(tmp_path)
    table = _standin_table(tmp_path, deb, wheel, _sha256(deb) if deb_sha == "match" else deb_sha,
                           _sha256(wheel) if wheel_sha == "match" else wheel_sha)
    proc = _setup("--dry-run", "--python", str(python), "--os-release", str(_os_release(tmp_path, "bookworm")),
                  "--pairs", str(table), "--libedgetpu-deb", str(deb), "--interpreter-wheel", str(wheel),
                  "--venv", str(tmp_path / "venv"), *extra)
    pip = log.read_text().splitlines() if log.is_file() else []
    return proc, pip, deb, wheel


def test_the_pair_and_edgekit_come_from_files_never_from_a_name_on_an_index(tmp_path):
    proc, pip, deb, wheel = _dry_run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "pair standin-host-pair: libedgetpu1-std 16.0tf2.17.1-1 + tflite-runtime 2.17.1" in out
    assert f"sha256 verified ({_sha256(deb)})" in out and f"sha256 verified ({_sha256(wheel)})" in out
    assert f"[dry-run] skipped: env DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades {deb}" in out
    installs = [line.split()[1:] for line in pip if line.startswith("install")]
    assert [str(wheel), "numpy<3"] in installs  # the pair's interpreter wheel and its numpy range
    edgekit_wheels = [a for args in installs for a in args if "edgekit_sb3" in a]
    assert edgekit_wheels and all(Path(a).name == "edgekit_sb3-0.1.0-py3-none-any.whl" for a in edgekit_wheels)
    assert any(line.startswith("wheel") and str(REPO) in line for line in pip)  # built from this checkout
    for args in installs:  # every install names a file, pip itself, or a requirement on numpy
        for arg in args:
            assert arg.startswith(("-", "/")) or arg in ("pip",) or arg.startswith("numpy"), (arg, pip)
    assert "edgekit doctor" in out and "dry run done" in out


def test_an_unpublished_checksum_is_said_and_a_wrong_one_stops(tmp_path):
    proc, _, deb, _ = _dry_run(tmp_path / "a", deb_sha=None)
    assert proc.returncode == 0
    assert f"could not verify {deb.name}: the pair table has no published sha256" in proc.stderr
    proc, pip, deb, _ = _dry_run(tmp_path / "b", deb_sha="0" * 64)
    assert proc.returncode == 1 and f"sha256 of {deb} is" in proc.stderr and "not installing it" in proc.stderr
    assert not any(line.startswith("install") for line in pip)


def test_a_deb_that_is_not_the_pairs_package_is_refused(tmp_path):
    python, _ = _recording_python(tmp_path)
    deb, wheel = _standin_deb(tmp_path, version="16.0"), _standin_wheel(tmp_path)
    table = _standin_table(tmp_path, deb, wheel, None, None)
    proc = _setup("--dry-run", "--python", str(python), "--os-release", str(_os_release(tmp_path, "bookworm")),
                  "--pairs", str(table), "--libedgetpu-deb", str(deb), "--venv", str(tmp_path / "venv"))
    assert proc.returncode == 1
    assert "holds libedgetpu1-std 16.0, the pair needs libedgetpu1-std 16.0tf2.17.1-1" in proc.stderr


def test_an_untested_system_stops_naming_the_supported_ones(tmp_path):
    python, log = _recording_python(tmp_path)
    proc = _setup("--dry-run", "--python", str(python), "--os-release", str(_os_release(tmp_path, "bullseye")),
                  "--venv", str(tmp_path / "venv"))
    assert proc.returncode == 1
    assert "no tested libedgetpu/interpreter pair for bullseye" in proc.stderr
    assert "supported: bookworm (Python 3.11, arm64); trixie (Python 3.13, arm64)" in proc.stderr
    assert "--coral-apt" in proc.stderr and not log.exists()  # nothing installed


def test_coral_apt_is_opt_in_and_warns_about_the_crash(tmp_path):
    python, log = _recording_python(tmp_path)
    proc = _setup("--dry-run", "--coral-apt", "--python", str(python), "--os-release",
                  str(_os_release(tmp_path, "bullseye")), "--venv", str(tmp_path / "venv"))
    assert proc.returncode == 0, proc.stderr
    assert "known to crash with SIGSEGV" in proc.stderr and "tensorflow/tensorflow#62371" in proc.stderr
    assert "coral-edgetpu-stable" in proc.stdout and "apt-get install -y libedgetpu1-std" in proc.stdout
    assert "install tflite-runtime==2.14.0 numpy<2" in log.read_text()


def test_outside_a_checkout_it_needs_a_wheel_and_never_falls_back_to_a_name(tmp_path):
    copy = tmp_path / "device" / "setup-pi.sh"
    copy.parent.mkdir()
    shutil.copy(SETUP_PI, copy)
    python, log = _recording_python(tmp_path)
    proc = _setup("--dry-run", "--python", str(python), "--venv", str(tmp_path / "venv"), script=copy, cwd=tmp_path)
    assert proc.returncode == 1 and "give --wheel PATH" in proc.stderr and "another project" in proc.stderr
    assert not log.exists()


def test_options_that_fake_a_system_need_dry_run():
    for option in (["--python", sys.executable], ["--os-release", "/etc/os-release"]):
        proc = _setup(*option)
        assert proc.returncode == 1 and "for --dry-run only" in proc.stderr
    proc = _setup("--help")
    assert proc.returncode == 0 and "--interpreter-wheel" in proc.stdout and "--coral-apt" in proc.stdout
