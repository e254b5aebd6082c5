"""Prove edgekit's device side on both Raspberry Pi OS userlands, Bookworm and Trixie, under qemu user emulation.

No Raspberry Pi is needed. Raspberry Pi OS Bookworm (64-bit) is Debian 12 "bookworm" for arm64 with Python 3.11;
Trixie (the default image since October 2025) is Debian 13 "trixie" with Python 3.13. Both userlands run here
under Debian trixie's ``qemu-aarch64`` 10.x (user-mode emulation: no binfmt_misc, no chroot, each command run as
``qemu-aarch64 -cpu cortex-a72 -L ROOT ROOT/usr/bin/python3 ...``). Bookworm's own qemu 7.2 is not used: it
segfaults in ai-edge-litert. What runs, per userland (``--userland``, default both):

  1. tools      debootstrap, dpkg-deb, shellcheck (``--install-tools``: apt-get them, as root); qemu-aarch64 10
                from trixie's ``qemu-user`` .deb, fetched with apt-get (a private apt configuration that lists
                trixie, so the host's sources stay as they are) and unpacked with ``dpkg-deb -x`` into
                CACHE/qemu (a static binary: nothing is installed)
  2. root       ``debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,python3-venv,
                python3-pip,ca-certificates SUITE ROOT MIRROR``, then ``dpkg-deb -x`` of every .deb into ROOT.
                Cached in CACHE/SUITE/root (reused while the recipe holds).
  3. wheel      edgekit built as a wheel on the host (from a copy of the source tree)
  4. venv       ``python3 -m venv --without-pip CACHE/SUITE/venv``, then ``pip install WHEEL[device]`` with
                Debian's pip: what the ``device`` extra resolves to there (ai-edge-litert + numpy 2), and no
                torch, TensorFlow, ONNX, SB3 or gymnasium. Cached while the wheel's dependencies are unchanged;
                a new edgekit goes in with the host's pip (pure Python), none when the wheel's files are the same.
  5. bundles    built on the host with ``edgekit build ... -q``: the shipped example (PPO Pendulum-v1) and a DQN
                CartPole-v1 trained here in seconds (cached in CACHE/bundles), or the bundles given with --bundle
  6. device     in the device venv, one emulated process (``scripts/pi_device_probe.py --plan``) for the
                venv's distributions, doctor (8) and all bundles: predict (compared with the host, computed
                once per run, bit for bit on the int8 inputs, in int8 steps on the outputs), ``edgekit verify``
                and ``edgekit bench`` (emulated timings) through the CLI's entry point, import isolation after
                them; then per bundle ``edgekit run --serve stdio`` (the console script; good and bad lines).
                Every model is probed in a child process first (``edgekit.runtime.probe``): without
                binfmt_misc the kernel cannot exec that aarch64 child, so every emulated process gets
                ``EDGEKIT_PROBE_LAUNCHER`` = the qemu command, and a probe cache of its own (per venv and run).
  7. setup-pi   ``device/setup-pi.sh --dry-run`` with the emulated Python and the userland's os-release, with
                LOCAL STAND-IN FILES for the pair (GitHub, where the pair's files are published, is not
                reachable here): a libedgetpu .deb built here (no library inside) and, for the interpreter, the
                PyPI wheel of the same API: tflite-runtime 2.14.0 (module tflite_runtime, as the pair's 2.17.1)
                on Bookworm; on Trixie, where tflite-runtime has no Python 3.13 wheel on PyPI, ai-edge-litert
                (the same Interpreter API under its new module name). A stand-in pair table keyed like the
                shipped one names them with their sha256 (``--pairs``). Its venv then runs the checks of 6 on
                the first bundle: the interpreter API of the pair, with the pair's numpy range.
  8. doctor     ``edgekit doctor --json`` in the userland, first in that process: it reads the userland's
                release, finds its tested pair, and imports no interpreter, TensorFlow or torch (no Coral here:
                it must exit 1); then ``edgekit doctor BUNDLE`` on the first bundle with a STAND-IN Edge TPU
                entry (its CPU model) and a STAND-IN libedgetpu.so.1 that is not a library: both models are
                probed in children under the emulator, the library is a FAIL with the fix; and one probe
                without the launcher, which must be the launcher's error (the child cannot start), not a
                damaged model.

The userlands run at once (``--jobs``, default: one per CPU, at most 2): each mostly waits on its emulated
processes, and ``setup-pi.sh`` runs alongside its userland's checks.

Usage (from the repository root; the host venv has edgekit-sb3[host]):

    scripts/pi_emulated_check.sh [--userland bookworm|trixie] [--json report.json] [--cache-dir DIR] [--bundle DIR]

The first run takes a while (roots, venvs: pip under emulation is slow); later runs reuse them. Exit codes: 0
every check passed, 1 a check failed, 77 skipped (the tools are missing and cannot be installed: the reason is
printed and written to --json), 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "scripts" / "pi_device_probe.py"
SETUP_PI = REPO / "device" / "setup-pi.sh"
EXAMPLE_MODEL = REPO / "examples" / "ppo-Pendulum-v1.zip"
SHIPPED_PAIRS = REPO / "edgekit" / "device" / "pairs.json"

ARCH = "arm64"
VARIANT = "minbase"
INCLUDE = ("python3", "python3-venv", "python3-pip", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit" / "pi-rootfs"
QEMU_SUITE = "trixie"  # qemu-user 10.x: bookworm's 7.2 segfaults in ai-edge-litert
QEMU_MIN_MAJOR = 10


@dataclass(frozen=True)
class Userland:
    """One Raspberry Pi OS release as a Debian arm64 root, and the PyPI stand-in for its pair's interpreter."""

    suite: str
    python: str  # MAJOR.MINOR of its python3
    standin_interpreter: tuple[str, str, str]  # (distribution, module, version) from PyPI, same API as the pair's
    standin_requires: tuple[str, ...]  # what the pair's wheel needs next to it (its numpy range)

    @property
    def root_python(self) -> str:
        return f"usr/bin/python{self.python}"

    @property
    def cp(self) -> str:
        return "cp" + self.python.replace(".", "")


USERLANDS = {
    "bookworm": Userland("bookworm", "3.11", ("tflite-runtime", "tflite_runtime", "2.14.0"), ("numpy<2",)),
    "trixie": Userland("trixie", "3.13", ("ai-edge-litert", "ai_edge_litert", "2.3.0"), ("numpy>=2.1",)),
}
HEAVY_DISTS = ("torch", "tensorflow", "tensorflow-cpu", "tf-keras", "keras", "onnx", "onnxruntime", "onnx2tf",
               "stable-baselines3", "gymnasium", "jax")
# The host's settings that must not reach an emulated process (its Python, edgekit's test and debug knobs, x86
# libraries); Emulator.env sets the probe's launcher and cache itself.
HOST_ONLY_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "EDGEKIT_DEBUG", "EDGEKIT_SYSROOT",
                 "EDGEKIT_LIBEDGETPU", "EDGEKIT_PROBE_LAUNCHER", "EDGEKIT_PROBE_CACHE", "EDGEKIT_PROBE_TIMEOUT")
DEFAULT_TOLERANCE_STEPS = 3.0  # edgekit verify's default
SKIP_EXIT = 77


class Skip(Exception):
    """The check cannot run here (a tool is missing): not a failure."""


class Failure(Exception):
    """A setup step failed: the checks cannot run."""


# --- small helpers --------------------------------------------------------------------------------------


def log(message: str) -> None:
    sys.stderr.write(message + "\n")  # one write: the userlands' threads log at once
    sys.stderr.flush()


def run(cmd: list[str], *, timeout: float = 1800, env: dict[str, str] | None = None, cwd: Path | None = None,
        input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; raise Failure with its output when it fails and ``check``."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, input=input)
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise Failure(f"`{' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}` exited {proc.returncode}:\n{tail}")
    return proc


def which(name: str) -> str | None:
    # debootstrap lives in /usr/sbin, which is not on a normal user's PATH.
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(("/usr/sbin", "/sbin", "/usr/local/sbin"))
    return shutil.which(name, path=path)


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tree_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(REPO)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One check at a time per cache directory (a second run waits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another check that holds {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@dataclass
class Report:
    checks: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        log(f"  {'✓' if ok else '✗'} {name}{': ' + detail if detail else ''}")
        return ok

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        log(f"== {name}")
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - start, 1)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)


# --- 1. tools ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    debootstrap: str | None
    qemu: str
    dpkg_deb: str | None
    shellcheck: str | None


def apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing {' '.join(packages)} with apt-get")
    run(["apt-get", "update", "-q"], env=env, timeout=900)
    run(["apt-get", "install", "-y", "-q", *packages], env=env, timeout=900)


def qemu_version(qemu: str) -> tuple[int, str]:
    line = run([qemu, "--version"], timeout=60).stdout.splitlines()[0]
    match = re.search(r"version (\d+)\.", line)
    return (int(match.group(1)) if match else 0), line


def fetch_qemu(cache: Path, mirror: str) -> str:
    """qemu-aarch64 from trixie's qemu-user .deb, unpacked into CACHE/qemu (apt-get download, private config)."""
    target = cache / "qemu" / "usr" / "bin" / "qemu-aarch64"
    if target.is_file():
        return str(target)
    if not which("apt-get") or not which("dpkg-deb"):
        raise Skip("no qemu-aarch64 10 and no apt-get/dpkg-deb to fetch trixie's qemu-user")
    apt = cache / "qemu-apt"
    shutil.rmtree(apt, ignore_errors=True)
    for sub in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / sub).mkdir(parents=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "etc" / "sources.list").write_text(f"deb [signed-by={keyring}] {mirror} {QEMU_SUITE} main\n")
    options = [f"-oDir::Etc::SourceList={apt}/etc/sources.list", "-oDir::Etc::SourceParts=/dev/null",
               f"-oDir::State::Lists={apt}/lists", f"-oDir::Cache={apt}/cache", "-oAcquire::Languages=none",
               "-oAPT::Sandbox::User=root" if os.geteuid() == 0 else "-oDebug::NoLocking=1"]
    log(f"  fetching qemu-user from Debian {QEMU_SUITE} ({mirror})")
    try:
        run(["apt-get", *options, "update", "-q"], timeout=900)
        run(["apt-get", *options, "download", "qemu-user"], cwd=apt, timeout=900)
    except (Failure, subprocess.TimeoutExpired) as exc:
        raise Skip(f"cannot fetch trixie's qemu-user with apt-get: {exc}") from None
    debs = sorted(apt.glob("qemu-user_*.deb"))
    if not debs:
        raise Failure(f"apt-get download qemu-user left no .deb in {apt}")
    partial = cache / "qemu.partial"
    shutil.rmtree(partial, ignore_errors=True)
    run(["dpkg-deb", "-x", str(debs[-1]), str(partial)], timeout=600)
    shutil.rmtree(cache / "qemu", ignore_errors=True)
    partial.rename(cache / "qemu")
    shutil.rmtree(apt, ignore_errors=True)
    return str(target)


def find_tools(install: bool, need_root_tools: bool, cache: Path, mirror: str, qemu: str | None) -> Tools:
    """The host tools; with ``install`` (as root), apt-get the missing ones. Raises Skip when missing."""
    wanted = {"debootstrap": "debootstrap", "dpkg-deb": "dpkg"} if need_root_tools else {}
    missing = sorted({pkg for tool, pkg in wanted.items() if not which(tool)})
    if install and os.geteuid() == 0 and which("apt-get"):
        if not which("shellcheck"):
            missing.append("shellcheck")  # lints device/setup-pi.sh
        if missing:
            try:
                apt_install(missing)
            except (Failure, subprocess.TimeoutExpired) as exc:
                raise Skip(f"cannot install {', '.join(missing)} with apt-get: {exc}") from None
    elif missing:
        raise Skip(f"{', '.join(missing)} missing (apt-get install them, or pass --install-tools as root)")
    if need_root_tools and not which("debootstrap"):
        raise Skip("debootstrap not found (apt-get install debootstrap, or pass --install-tools)")
    if need_root_tools and not which("dpkg-deb"):
        raise Skip("dpkg-deb not found (a Debian-based host is needed to unpack the root)")
    if qemu is None:
        found = [q for q in (which("qemu-aarch64"), which("qemu-aarch64-static"),
                             str(cache / "qemu/usr/bin/qemu-aarch64")) if q and Path(q).is_file()]
        qemu = next((q for q in found if qemu_version(q)[0] >= QEMU_MIN_MAJOR), None)
        if qemu is None:
            if not install:
                raise Skip(f"no qemu-aarch64 {QEMU_MIN_MAJOR}+ (pass --install-tools to fetch trixie's qemu-user; "
                           "bookworm's qemu 7.2 segfaults in ai-edge-litert)")
            qemu = fetch_qemu(cache, mirror)
    major, line = qemu_version(qemu)
    if major < QEMU_MIN_MAJOR:
        raise Skip(f"{qemu} is {line}: qemu {QEMU_MIN_MAJOR}+ is needed (older ones segfault in ai-edge-litert)")
    return Tools(which("debootstrap"), qemu, which("dpkg-deb"), which("shellcheck"))


def debian_mirror() -> str:
    """$EDGEKIT_DEBIAN_MIRROR, else the host's Debian mirror (deb822 or one-line sources), else deb.debian.org."""
    env = os.environ.get("EDGEKIT_DEBIAN_MIRROR")
    if env:
        return env
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            uris = fields.get("uris", "").split()
            if uris and "debian" in uris[0] and "security" not in uris[0] and "deb" in fields.get("types", "deb"):
                return uris[0]
    return DEFAULT_MIRROR


# --- 2. the emulated root ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Emulator:
    qemu: str
    root: Path
    cpu: str | None = None

    @property
    def prefix(self) -> list[str]:
        return [self.qemu, *(["-cpu", self.cpu] if self.cpu else []), "-L", str(self.root)]

    def python(self, python: Path, *args: str) -> list[str]:
        return [*self.prefix, str(python), *args]

    def env(self, probe_cache: Path) -> dict[str, str]:
        """The environment of an emulated edgekit: none of the host's Python or edgekit settings, and
        ``EDGEKIT_PROBE_LAUNCHER`` set to this emulator, because without binfmt_misc the kernel cannot exec
        the probe's aarch64 child itself ("Exec format error"). Probes are cached in ``probe_cache``, one per
        run, so that each run probes its models afresh and the host's cache is not touched."""
        env = {k: v for k, v in os.environ.items() if k not in HOST_ONLY_ENV}
        return {**env, "EDGEKIT_PROBE_LAUNCHER": shlex.join(self.prefix), "EDGEKIT_PROBE_CACHE": str(probe_cache)}


def root_recipe(userland: Userland) -> dict[str, Any]:
    return {"suite": userland.suite, "arch": ARCH, "variant": VARIANT, "include": list(INCLUDE), "version": 2}


def ensure_root(home: Path, userland: Userland, tools: Tools, mirror: str, data: dict[str, Any],
                cpu: str | None = None) -> Emulator:
    """HOME/root: a SUITE arm64 minbase root, made once and reused while its recipe holds."""
    root, marker = home / "root", home / "root.json"
    recipe = root_recipe(userland)
    if marker.is_file() and (root / userland.root_python).is_file() \
            and json.loads(marker.read_text()).get("recipe") == recipe:
        data["root"] = {**json.loads(marker.read_text()), "path": str(root), "cached": True}
        log(f"  reusing {root}")
        return Emulator(tools.qemu, root, cpu)
    if os.geteuid() != 0:
        raise Skip("debootstrap needs root to make the emulated root (run as root once; later runs reuse it)")
    if not tools.debootstrap or not tools.dpkg_deb:
        raise Skip("debootstrap or dpkg-deb not found")
    # The venvs point at the root by absolute path: they go with it.
    for stale in (root, home / "venv", home / "venv.json", home / "setup-pi-venv", marker):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    partial = home / "root.partial"
    shutil.rmtree(partial, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    log(f"  debootstrap --foreign {userland.suite} {ARCH} from {mirror} (a couple of minutes)")
    start = time.monotonic()
    run([tools.debootstrap, "--foreign", f"--arch={ARCH}", f"--variant={VARIANT}",
         f"--include={','.join(INCLUDE)}", userland.suite, str(partial), mirror], timeout=1800)
    debs = sorted((partial / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    if not debs:
        raise Failure(f"debootstrap left no .deb in {partial}/var/cache/apt/archives")
    for deb in debs:
        run([tools.dpkg_deb, "-x", str(deb), str(partial)], timeout=300)
    partial.rename(root)
    emulator = Emulator(tools.qemu, root, cpu)
    probe = run(emulator.python(root / userland.root_python, "-c",
                                "import platform, sys; print(platform.machine(), platform.python_version())"),
                timeout=300).stdout.split()
    if probe[0] != "aarch64" or not probe[1].startswith(userland.python + "."):
        raise Failure(f"the emulated Python reports {probe}, expected aarch64 {userland.python}")
    info = {"recipe": recipe, "mirror": mirror, "packages": len(debs), "machine": probe[0], "python": probe[1],
            "made_in_s": round(time.monotonic() - start, 1)}
    marker.write_text(json.dumps(info, indent=2))
    data["root"] = {**info, "path": str(root), "cached": False}
    return emulator


# --- 3. the wheel -----------------------------------------------------------------------------------------


def build_wheel(dest: Path, python: str = sys.executable) -> Path:
    """edgekit's wheel, built from a copy of the source tree (no build files land in the checkout)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (REPO / name).exists():
                shutil.copy2(REPO / name, src / name)
        shutil.copytree(REPO / "edgekit", src / "edgekit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        base = [python, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(dest)]
        proc = run([*base[:5], "--no-build-isolation", *base[5:]], check=False, timeout=600)
        if proc.returncode != 0:  # no setuptools in this environment: let pip fetch the build backend
            run(base, timeout=900)
    wheels = sorted(dest.glob("edgekit_sb3-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise Failure(f"pip wheel produced no edgekit_sb3-*.whl in {dest}")
    return wheels[-1]


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(name).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def wheel_installed(wheel: Path, site: Path) -> bool:
    """Whether every file of ``wheel`` (its package and its METADATA) is in ``site`` byte for byte. Read from
    the files, not from a marker: the cache is shared with other checkouts, which install their own edgekit."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if ".dist-info/" in name and not name.endswith(".dist-info/METADATA"):
                continue  # RECORD, INSTALLER, entry points: written or rewritten by pip
            try:
                if (site / name).read_bytes() != zf.read(name):
                    return False
            except OSError:
                return False
    return True


def device_requirements(wheel: Path) -> list[str]:
    """The wheel's requirements for ``edgekit-sb3[device]``: the core ones and the device extra's."""
    return [r for r in wheel_requirements(wheel) if "extra ==" not in r or 'extra == "device"' in r]


# --- 4. the device venv -----------------------------------------------------------------------------------

def debian_pip_env(emulator: Emulator) -> dict[str, str]:
    """Debian's pip (python3-pip in the root) on the path of a venv made without pip."""
    return {**os.environ, "PYTHONPATH": str(emulator.root / "usr/lib/python3/dist-packages")}


def ensure_device_venv(home: Path, userland: Userland, emulator: Emulator, wheel: Path, report: Report,
                       data: dict[str, Any]) -> Path:
    """HOME/venv with edgekit-sb3[device] installed by Debian's pip; rebuilt when the dependencies change."""
    venv, marker = home / "venv", home / "venv.json"
    key = digest(device_requirements(wheel), root_recipe(userland))
    python = venv / "bin" / "python"
    cached = marker.is_file() and python.is_symlink() and json.loads(marker.read_text()).get("key") == key
    start = time.monotonic()
    site = venv / "lib" / f"python{userland.python}" / "site-packages"
    if cached and wheel_installed(wheel, site):
        # This wheel's files are there, byte for byte (its bytecode, compiled by the emulated Python, is kept).
        log(f"  reusing {venv} with this run's edgekit already in it")
    elif cached:
        # edgekit is pure Python (py3-none-any): the host's pip puts this run's wheel into the venv in seconds,
        # where the emulated pip takes minutes. Its dependencies were resolved by the emulated pip (the key).
        log(f"  reusing {venv}; reinstalling edgekit from {wheel.name} (host pip, --target)")
        run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--no-compile",
             "--disable-pip-version-check", "--target", str(site), str(wheel)])
        shutil.rmtree(site / "bin", ignore_errors=True)  # --target's copy of the console script
    else:
        shutil.rmtree(venv, ignore_errors=True)
        marker.unlink(missing_ok=True)
        log(f"  python{userland.python} -m venv --without-pip {venv}; pip install {wheel.name}[device] "
            "(minutes: pip runs emulated)")
        run(emulator.python(emulator.root / userland.root_python, "-m", "venv", "--without-pip", str(venv)))
        run(emulator.python(python, "-m", "pip", "install", "-q", f"{wheel}[device]"), env=debian_pip_env(emulator))
        marker.write_text(json.dumps({"key": key, "requirements": device_requirements(wheel)}, indent=2))
    data["venv"] = {"path": str(venv), "cached": cached, "seconds": round(time.monotonic() - start, 1),
                    "requirements": device_requirements(wheel)}
    return python


def venv_checks(userland: Userland, dists: dict[str, str], report: Report, data: dict[str, Any]) -> None:
    """What the device venv holds (listed in it, without Debian's pip on the path)."""
    data["venv"]["distributions"] = dists
    report.check(f"{userland.suite}: device extra resolves to ai-edge-litert + numpy 2 on aarch64/py{userland.python}",
                 "ai-edge-litert" in dists and dists.get("numpy", "").startswith("2.")
                 and "tflite-runtime" not in dists,
                 ", ".join(f"{k} {v}" for k, v in sorted(dists.items())))
    heavy = sorted(d for d in dists if d in HEAVY_DISTS)
    report.check(f"{userland.suite}: no torch/tensorflow/onnx/SB3/gymnasium installed", not heavy,
                 ", ".join(heavy) or "none")


# --- 5. bundles -------------------------------------------------------------------------------------------

TRAIN_DQN = """
import sys, torch, stable_baselines3 as sb3
torch.set_num_threads(1)
model = sb3.DQN("MlpPolicy", "CartPole-v1", seed=0, device="cpu", learning_starts=100,
                policy_kwargs={"net_arch": [64, 64]})
model.learn(total_timesteps=2000)
model.save(sys.argv[1])
"""


def host_edgekit() -> list[str]:
    return [sys.executable, "-m", "edgekit"]


def default_bundles(cache: Path, report: Report, example_only: bool = False) -> list[Path]:
    """The shipped example (PPO Pendulum-v1) and a DQN CartPole-v1 trained here, built with the host's CLI.

    Cached in CACHE/bundles under a key of edgekit's source and the model, so a later run with the same
    source reuses them.
    """
    source = tree_digest([p for p in (REPO / "edgekit").rglob("*.py")])
    out = cache / "bundles"
    out.mkdir(parents=True, exist_ok=True)
    bundles = []
    dqn_zip = out / f"dqn-cartpole-{digest(TRAIN_DQN)}.zip"
    if not dqn_zip.is_file() and not example_only:
        log("  training a DQN on CartPole-v1 (2000 steps)")
        tmp = out / f"partial-{dqn_zip.name}"
        run([sys.executable, "-c", TRAIN_DQN, str(tmp)], timeout=900)
        tmp.rename(dqn_zip)
    cases = [("ppo-pendulum-example", EXAMPLE_MODEL, "Pendulum-v1"), ("dqn-cartpole", dqn_zip, "CartPole-v1")]
    for name, model, env_id in cases[:1] if example_only else cases:
        key = digest(source, hashlib.sha256(model.read_bytes()).hexdigest(), env_id)
        bundle = out / f"{name}-{key}"
        if not (bundle / "manifest.json").is_file():
            for old in out.glob(f"{name}-*"):  # bundles of an older source
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
            log(f"  edgekit build {model.name} --env {env_id} -q")
            run([*host_edgekit(), "build", str(model), "--env", env_id, "-o", str(bundle), "-q", "--force"],
                timeout=1800, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        else:
            log(f"  reusing {bundle}")
        bundles.append(bundle)
    report.data["bundles_cached_key"] = source
    return bundles


# --- 6. checks on aarch64 ---------------------------------------------------------------------------------


def host_results(bundle: Path, obs: Any) -> dict[str, Any]:
    """What the host computes for ``obs``: quantized inputs, raw int8 outputs, actions (and reference kernels)."""
    import numpy as np

    from edgekit.runtime import EdgePolicy

    policy = EdgePolicy.load(bundle, device="cpu")
    obs = policy.observations_of(np.asarray(obs).reshape(len(obs), -1))  # flat features -> as the env returns them
    quantized = policy.quantize_observations(obs)
    raw = np.stack([policy.invoke_int8(q).copy() for q in quantized])
    # The host's own spread between kernels: its default (XNNPACK) and TFLite's reference kernels.
    plain = policy.backend.interpreter(str(bundle / policy.model_file), num_threads=1, plain=True)
    plain.allocate_tensors()
    in_index, out_index = plain.get_input_details()[0]["index"], plain.get_output_details()[0]["index"]
    reference = []
    for q in quantized:
        plain.set_tensor(in_index, q.reshape(plain.get_input_details()[0]["shape"]))
        plain.invoke()
        reference.append(plain.get_tensor(out_index)[0].copy())
    return {"quantized": quantized, "raw": raw, "actions": policy.predict(obs), "reference_raw": np.stack(reference),
            "interpreter": f"{policy.backend.name} {policy.backend.version}", "numpy": np.__version__,
            "discrete": policy.manifest.postprocess in ("argmax", "multi_argmax", "threshold"), "policy": policy}


def float_policy_actions(bundle: Path, obs: Any) -> Any:
    """SB3's ``predict(obs, deterministic=True)`` on the host, from the model zip the bundle was built from
    (named in its report.json): computed once per bundle and run, every venv is compared with it."""
    from edgekit.bundle.manifest import Manifest
    from edgekit.host.algorithms import ALGORITHMS

    manifest = Manifest.read(bundle)
    model_path = Path(json.loads((bundle / "report.json").read_text())["reference"]["model"])
    if not model_path.is_file():
        raise FileNotFoundError(f"the bundle's model {model_path} is not on this host")
    model = ALGORITHMS[manifest.algorithm].load_class().load(model_path, device="cpu")  # SB3 or sb3-contrib
    return model.predict(obs, deterministic=True)[0]


def float_fidelity(bundle: Path, float_actions: Any, runs: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """How close each run's actions are to the float policy's (``float_policy_actions``).

    ``runs`` maps a name to (raw int8 outputs, actions). Returns per run the build report's fidelity
    metrics: action error as a share of the action range (mean, p99, max), or argmax agreement.
    """
    import numpy as np

    from edgekit.bundle.manifest import Manifest
    from edgekit.core.metrics import fidelity_metrics

    manifest = Manifest.read(bundle)
    scale, zero = manifest.models["cpu"].output.quant.scale, manifest.models["cpu"].output.quant.zero_point
    out = {}
    for run_name, (raw, actions) in runs.items():
        dequantized = ((raw.astype(np.float32) - zero) * scale).reshape(len(raw), -1)
        # raw-output metrics are not used here: the float side's raw outputs are not the int8 model's
        m = fidelity_metrics(dequantized, dequantized, float_actions, actions, manifest.action_space, scale)
        if "discrete" in m:
            out[run_name] = {"argmax_agreement": round(m["discrete"]["agreement"], 5)}
        else:
            c = m["continuous"]
            out[run_name] = {k: None if c[k] is None else round(c[k], 5)
                             for k in ("mean_share_of_range", "p99_share_of_range", "max_share_of_range")}
    return out


# How much worse than the host's the aarch64 fidelity to the float policy may be, in percentage points.
FIDELITY_MARGIN = {"mean_share_of_range": 0.005, "p99_share_of_range": 0.01, "argmax_agreement": 0.01}


def fidelity_close(fidelity: dict[str, Any]) -> bool:
    host, device = fidelity["host"], fidelity["aarch64"]
    if "argmax_agreement" in host:
        return device["argmax_agreement"] >= host["argmax_agreement"] - FIDELITY_MARGIN["argmax_agreement"]
    return all(host[k] is None or device[k] <= host[k] + FIDELITY_MARGIN[k]
               for k in ("mean_share_of_range", "p99_share_of_range"))


def fidelity_text(fidelity: dict[str, Any]) -> str:
    def one(m: dict[str, Any]) -> str:
        if "argmax_agreement" in m:
            return f"argmax agreement {m['argmax_agreement']:.2%}"
        if m["mean_share_of_range"] is None:
            return "unbounded actions"
        return f"action error mean {m['mean_share_of_range']:.2%}, p99 {m['p99_share_of_range']:.2%} of range"
    return "; ".join(f"{name}: {one(m)}" for name, m in fidelity.items())


def steps_between(a: Any, b: Any) -> Any:
    import numpy as np

    return np.abs(a.astype(np.int32) - b.astype(np.int32))


def compare(host: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    steps = steps_between(host["raw"], device["raw"])
    kernels = steps_between(host["raw"], host["reference_raw"])
    device_vs_reference = steps_between(host["reference_raw"], device["raw"])
    n = len(steps)
    if host["discrete"]:
        action_diff = int(np.sum(host["actions"] != device["actions"]))
        action_detail: dict[str, Any] = {"actions_differing": action_diff}
    else:
        diff = np.abs(host["actions"] - device["actions"]).reshape(n, -1)
        action_detail = {"actions_differing": int(np.sum(np.any(diff > 0, axis=1))),
                         "max_action_abs_diff": float(diff.max())}
    return {
        "observations": n,
        "inputs_identical": bool(np.array_equal(host["quantized"], device["quantized"])),
        "max_steps": int(steps.max()),
        "mean_steps": round(float(steps.mean()), 4),
        "observations_differing": int(np.sum(np.any(steps.reshape(n, -1) > 0, axis=1))),
        "host_kernels_max_steps": int(kernels.max()),
        "device_vs_host_reference_kernels_max_steps": int(device_vs_reference.max()),
        **action_detail,
    }


class LineClient:
    """Drive a JSON-lines server on a pipe: one request, then wait for its one response line."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()  # type: ignore[arg-type]

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def receive(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, timeout: float) -> int | None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def serve_check(cmd: list[str], env: dict[str, str], obs: Any, expected: Any, discrete: bool) -> dict[str, Any]:
    """Good and bad lines, one at a time; every non-empty line gets one line back and the loop goes on."""
    import numpy as np

    o = [[float(v) for v in np.asarray(row).reshape(-1)] for row in obs[:3]]
    nan_line = "[" + ", ".join(["NaN"] + ["0.0"] * (len(o[0]) - 1)) + "]"
    requests: list[tuple[str, str, Any]] = [  # (line, kind, expected action or None)
        (json.dumps(o[0]), "action", expected[0]),
        (json.dumps({"id": 7, "obs": o[1]}), "action", expected[1]),
        ("not json", "error", None),
        (json.dumps(o[0][:-1] or [1.0, 2.0]), "error", None),  # wrong shape
        (nan_line, "error", None),
        (json.dumps({"id": 8}), "error", None),  # no "obs"
        ("", "none", None),  # blank lines are skipped, not answered
        (json.dumps([o[2], o[2]]), "action", [expected[2], expected[2]]),  # a batch
        (json.dumps({"id": "last", "obs": o[2]}), "action", expected[2]),
    ]
    client = LineClient(cmd, env)
    results, problems = [], []
    start = time.monotonic()
    for line, kind, want in requests:
        client.send(line)
        if kind == "none":
            continue
        reply = client.receive(timeout=240 if not results else 60)  # the first waits for the emulated start-up
        if reply is None:
            problems.append(f"no response to {line!r}")
            break
        try:
            answer = json.loads(reply)
        except ValueError:
            problems.append(f"not JSON: {reply!r}")
            continue
        results.append(answer)
        if kind == "error" and "error" not in answer:
            problems.append(f"{line!r} -> {reply.strip()} (expected an error)")
        if kind == "action":
            got = answer.get("action")
            if got is None:
                problems.append(f"{line!r} -> {reply.strip()} (expected an action)")
            elif not np.array_equal(np.asarray(got, dtype=np.float32).reshape(-1),
                                    np.asarray(want, dtype=np.float32).reshape(-1)):
                problems.append(f"{line!r} -> {got}, predict gave {np.asarray(want).tolist()}")
            elif discrete and not all(isinstance(v, int) for v in np.asarray(got, dtype=object).reshape(-1)):
                problems.append(f"discrete action not an integer: {got}")
        if line.startswith("{") and answer.get("id") != json.loads(line).get("id"):
            problems.append(f"{line!r} -> {reply.strip()} (the id is not echoed)")
    code = client.close(timeout=120)
    if code != 0:
        problems.append(f"exit code {code} after end of input; stderr: {''.join(client.stderr)[-500:]}")
    answered = sum(1 for _, kind, _ in requests if kind != "none")
    return {"requests": len(requests), "responses": len(results), "expected_responses": answered,
            "errors_answered": sum(1 for r in results if "error" in r), "exit_code": code,
            "problems": problems, "seconds": round(time.monotonic() - start, 1)}


@dataclass(frozen=True)
class HostReference:
    """What the host computes for one bundle, once per run: every venv of every userland is compared with it."""

    bundle: Path
    obs: Any  # the held-out observations, shaped as the env returns them
    obs_file: Path  # the same, for the emulated side
    host: dict[str, Any]  # host_results without the policy
    bound: float  # the largest host/aarch64 difference allowed, in int8 output steps
    float_actions: Any  # the float SB3 policy's actions, or None (fidelity_error says why)
    fidelity_error: str | None
    algorithm: str
    env_id: str


def host_reference(bundle: Path, work: Path, tolerance: float, strict: bool) -> HostReference:
    import numpy as np

    with np.load(bundle / "calibration.npz", allow_pickle=False) as data:
        obs = np.asarray(data["held_out"], dtype=np.float32)
    host = host_results(bundle, obs)
    policy = host.pop("policy")
    obs = obs.reshape(-1, *policy.observation_shape)
    obs_file = work / f"{bundle.name}.obs.npz"
    np.savez(obs_file, observations=obs)
    try:
        float_actions, error = float_policy_actions(bundle, obs), None
    except Exception as exc:  # needs SB3 and the bundle's model zip on the host
        float_actions, error = None, f"{type(exc).__name__}: {exc}"
        log(f"  {bundle.name}: no comparison with the float policy: {error}")
    # TFLite's own kernels disagree by some steps on one model (the host's XNNPACK and reference kernels):
    # unless --strict, the aarch64 result may differ from the host's as much as the host differs from itself.
    spread = int(steps_between(host["raw"], host["reference_raw"]).max())
    return HostReference(bundle, obs, obs_file, host, tolerance if strict else max(tolerance, spread), float_actions,
                         error, policy.manifest.algorithm, policy.manifest.env_id)


def run_plan(emulator: Emulator, python: Path, steps: list[dict[str, Any]], work: Path, name: str,
             env: dict[str, str]) -> tuple[list[dict[str, Any] | None], str]:
    """Run ``steps`` in one emulated process (``pi_device_probe.py --plan``): each step's output line, or None
    for a step that printed none, and the process's failure (exit status and stderr) or ''."""
    plan = work / f"{name}.plan.json"
    plan.write_text(json.dumps({"steps": steps}, indent=2))
    start = time.monotonic()
    proc = run(emulator.python(python, str(PROBE), "--plan", str(plan)), env=env, check=False, timeout=3600)
    outs: list[dict[str, Any] | None] = [None] * len(steps)
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
            entry = json.loads(line)
            outs[entry["step"]] = entry
    log(f"  {name}: {len(steps)} steps in one emulated process in {time.monotonic() - start:.0f} s")
    failure = "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"
    return outs, failure


def bundle_steps(ref: HostReference, out: Path, iterations: int) -> list[dict[str, Any]]:
    """Predict, ``edgekit verify`` and ``edgekit bench`` on one bundle (the CLI's entry point, in-process)."""
    bundle = str(ref.bundle)
    return [{"predict": {"bundle": bundle, "obs": str(ref.obs_file), "out": str(out), "device": "cpu"}},
            {"cli": ["verify", bundle, "--json", "--device", "cpu", "--tolerance-steps", f"{ref.bound:g}"]},
            {"cli": ["bench", bundle, "--json", "--iterations", str(iterations)]}]


def check_venv(refs: list[HostReference], emulator: Emulator, python: Path, work: Path, tolerance: float,
               iterations: int, report: Report, label: str, interpreter: str, before: Sequence[dict[str, Any]] = (),
               after: Sequence[dict[str, Any]] = ()) -> tuple[list[dict[str, Any]], list[Any], list[Any], str]:
    """Every check of every bundle in one emulated venv; ``label`` prefixes the check names (userland, venv),
    ``interpreter`` is the module the venv must run (ai_edge_litert, tflite_runtime).

    One emulated process runs the steps ``before``, then predict, verify and bench on every bundle, then the
    steps ``after`` (under emulation each process costs seconds of start-up and imports); then each bundle
    is served by the console script a Pi user runs, driven line by line from here. Returns the bundles'
    results, the outputs of ``before`` and ``after``, and the process's failure ('' when it exited 0).
    """
    files = re.sub(r"[^A-Za-z0-9.+-]+", "-", label)
    outs = [work / f"{files}-{ref.bundle.name}.npz" for ref in refs]
    steps = [*before, *(s for ref, out in zip(refs, outs) for s in bundle_steps(ref, out, iterations)), *after]
    env = emulator.env(work / "probe-cache" / files)  # each venv probes its models itself
    lines, failure = run_plan(emulator, python, steps, work, files, env)
    first = len(before)
    results = []
    for i, (ref, out) in enumerate(zip(refs, outs)):
        name = f"{label}: {ref.bundle.name}"
        result: dict[str, Any] = {"bundle": str(ref.bundle), "label": label, "algorithm": ref.algorithm,
                                  "env_id": ref.env_id, "host_interpreter": ref.host["interpreter"],
                                  "host_numpy": ref.host["numpy"]}
        results.append(result)
        predict, verify, bench = lines[first + 3 * i:first + 3 * i + 3]
        if predict is None or "predict" not in predict:
            error = (predict or {}).get("error") or failure or "no output"
            report.check(f"{name}: EdgePolicy.predict on aarch64", False, error[-800:])
            result["probe_error"] = error
            continue
        device = check_results(ref, predict, verify or {}, bench or {}, out, iterations, report, name, tolerance,
                               interpreter, result)
        serve = serve_check(emulator.python(python, str(python.parent / "edgekit"), "run", str(ref.bundle),
                                            "--serve", "stdio", "--device", "cpu"),
                            env, ref.obs, device["single_actions"], ref.host["discrete"])
        result["serve"] = serve
        report.check(f"{name}: edgekit run --serve stdio answers and survives bad lines",
                     not serve["problems"] and serve["responses"] == serve["expected_responses"],
                     f"{serve['responses']}/{serve['expected_responses']} lines answered "
                     f"({serve['errors_answered']} errors), exit {serve['exit_code']}, {serve['seconds']:.0f} s"
                     + ("; " + "; ".join(serve["problems"]) if serve["problems"] else ""))
    return results, lines[:first], lines[len(steps) - len(after):], failure


def check_results(ref: HostReference, predict: dict[str, Any], verify_run: dict[str, Any], bench_run: dict[str, Any],
                  out_file: Path, iterations: int, report: Report, name: str, tolerance: float, interpreter: str,
                  result: dict[str, Any]) -> dict[str, Any]:
    """The checks on what one bundle computed in the emulated process (its steps' lines; its arrays in
    ``out_file``); returns the arrays."""
    import numpy as np

    entry = {**predict["predict"], "heavy_modules": (bench_run or verify_run or predict)["heavy_modules"]}
    with np.load(out_file) as data:
        device = {k: data[k] for k in data.files}
    comparison = compare(ref.host, device)
    comparison["bound_steps"] = ref.bound
    if ref.float_actions is None:
        fidelity: dict[str, Any] = {"error": ref.fidelity_error}
    else:
        fidelity = float_fidelity(ref.bundle, ref.float_actions, {"host": (ref.host["raw"], ref.host["actions"]),
                                                                  "aarch64": (device["raw"], device["actions"])})
    result.update(device_platform=entry, comparison=comparison, fidelity_to_float_policy=fidelity)
    report.check(f"{name}: runs on {entry['machine']} with {entry['interpreter']} {entry['interpreter_version']}, "
                 f"numpy {entry['numpy']}", entry["machine"] == "aarch64" and entry["interpreter"] == interpreter
                 and entry["single_equals_batch"],
                 f"fast path {entry['fast_path']}, single-step predict equals batch: {entry['single_equals_batch']}")
    report.check(f"{name}: int8 inputs bit-identical to the host's", comparison["inputs_identical"],
                 f"{comparison['observations']} observations")
    how = f"{tolerance:g}" if ref.bound == tolerance else f"{ref.bound:g} (the host's own kernel spread)"
    report.check(f"{name}: aarch64 int8 outputs within {how} steps of the host's",
                 comparison["max_steps"] <= ref.bound,
                 f"max {comparison['max_steps']}, mean {comparison['mean_steps']} steps, "
                 f"{comparison['observations_differing']}/{comparison['observations']} observations differ, "
                 f"{comparison['actions_differing']} actions differ (host's own XNNPACK vs reference kernels: "
                 f"max {comparison['host_kernels_max_steps']}; aarch64 vs host reference kernels: "
                 f"max {comparison['device_vs_host_reference_kernels_max_steps']})")
    if "error" not in fidelity:
        report.check(f"{name}: aarch64 as close to the float SB3 policy as the host", fidelity_close(fidelity),
                     fidelity_text(fidelity))
    report.check(f"{name}: import isolation on aarch64", not entry["heavy_modules"],
                 "sys.modules holds " + (", ".join(entry["heavy_modules"]) or "no heavy module")
                 + " after predict, verify and bench")

    # edgekit verify (run by the emulated process through the CLI's entry point)
    try:
        verify = json.loads(verify_run.get("stdout", ""))
    except ValueError:
        verify = {"passed": False, "output": (verify_run.get("stdout", "") + verify_run.get("stderr", ""))[-800:]}
    if "error" in verify_run:
        verify["output"] = verify_run["error"][-800:]
    verify.update(exit_code=verify_run.get("exit_code"), seconds=verify_run.get("seconds"))
    if "max_steps" in verify:
        verify["max_steps"] = round(float(verify["max_steps"]), 3)
        verify["passes_default_tolerance"] = verify["max_steps"] <= DEFAULT_TOLERANCE_STEPS + 1e-3
        detail = (f"exit {verify['exit_code']}, max {verify['max_steps']:g} steps, {verify.get('action_mismatches')} "
                  f"of {verify.get('samples')} actions differ")
        if not verify["passes_default_tolerance"]:
            detail += f"; NOTE: fails at verify's default tolerance ({DEFAULT_TOLERANCE_STEPS:g})"
    else:
        detail = verify["output"]
    result["verify"] = verify
    report.check(f"{name}: edgekit verify --device cpu --tolerance-steps {ref.bound:g}",
                 verify["exit_code"] == 0 and verify.get("passed") is True, detail)

    # edgekit bench (likewise)
    try:
        bench = json.loads(bench_run.get("stdout", ""))
        cpu = bench["results"][0]
        detail = (f"emulated: predict p50 {cpu['predict']['p50_us']:.0f} us, "
                  f"invoke p50 {cpu['invoke']['p50_us']:.0f} us (not a Pi's timings)")
    except (ValueError, KeyError, IndexError):
        output = bench_run.get("stdout", "") + bench_run.get("stderr", "") + bench_run.get("error", "")
        bench, detail = {"output": output[-800:]}, output[-300:]
    bench.update(exit_code=bench_run.get("exit_code"), seconds=bench_run.get("seconds"))
    result["bench"] = bench
    report.check(f"{name}: edgekit bench --iterations {iterations}", bench["exit_code"] == 0 and "results" in bench,
                 detail)
    return device


# --- 7. setup-pi.sh with stand-in pair files ----------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def standin_interpreter_wheel(cache: Path, userland: Userland) -> Path:
    """The PyPI wheel of the pair's interpreter API for this userland (aarch64, its Python), downloaded once."""
    dist, _, version = userland.standin_interpreter
    dest = cache / "standins" / userland.suite
    found = sorted(dest.glob(f"{dist.replace('-', '_')}-{version}-{userland.cp}-*aarch64.whl"))
    if found:
        return found[-1]
    dest.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--platform",
         "manylinux_2_34_aarch64", "--platform", "manylinux_2_27_aarch64", "--platform", "manylinux2014_aarch64",
         "--python-version", userland.python, "--implementation", "cp", "-d", str(dest), f"{dist}=={version}"],
        timeout=900)
    found = sorted(dest.glob(f"{dist.replace('-', '_')}-{version}-{userland.cp}-*aarch64.whl"))
    if not found:
        raise Failure(f"pip download {dist}=={version} for aarch64/{userland.cp} left no wheel in {dest}")
    return found[-1]


def standin_deb(cache: Path, userland: Userland, package: str, version: str, tools: Tools) -> Path:
    """A STAND-IN for the pair's libedgetpu .deb: the package name and version, no library inside."""
    out = cache / "standins" / userland.suite / f"standin-{package}_{version}_arm64.deb"
    if out.is_file():
        return out
    if not tools.dpkg_deb:
        raise Skip("dpkg-deb not found: cannot build the stand-in libedgetpu package")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        (tree / "DEBIAN").mkdir(parents=True)
        (tree / "DEBIAN" / "control").write_text(
            f"Package: {package}\nVersion: {version}\nArchitecture: arm64\nMaintainer: edgekit <none@invalid>\n"
            "Description: STAND-IN for libedgetpu, built by scripts/pi_emulated_check.py (holds no library)\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        run([tools.dpkg_deb, "--build", str(tree), str(out)], timeout=120)
    return out


def standin_pairs(cache: Path, userland: Userland, tools: Tools) -> dict[str, Any]:
    """A pair table like the shipped one for this userland, naming the stand-in files and their sha256."""
    table = json.loads(SHIPPED_PAIRS.read_text())
    pair = next(p for p in table["pairs"] if p["os"]["codename"] == userland.suite)
    std = pair["libedgetpu"]["std"]
    deb = standin_deb(cache, userland, std["package"], pair["libedgetpu"]["version"], tools)
    wheel = standin_interpreter_wheel(cache, userland)
    dist, module, version = userland.standin_interpreter
    pair["id"] = f"STAND-IN-{pair['id']}"
    pair["libedgetpu"] = {"version": pair["libedgetpu"]["version"], "std": {
        "package": std["package"], "file": deb.name, "url": f"https://stand-in.invalid/{deb.name}",
        "sha256": sha256_of(deb)}}
    pair["interpreter"] = {"distribution": dist, "module": module, "version": version, "file": wheel.name,
                           "url": f"https://stand-in.invalid/{wheel.name}", "sha256": sha256_of(wheel),
                           "requires": list(userland.standin_requires)}
    pair["pycoral"] = None
    pair["notes"] = [f"STAND-IN for the {userland.suite} pair: a .deb without a library and PyPI's {dist} {version} "
                     "(the same interpreter API) for the pair's wheel, which is not downloadable here"]
    table["pairs"] = [pair]
    path = cache / "standins" / userland.suite / "standin-pairs.json"
    path.write_text(json.dumps(table, indent=2))
    return {"table": path, "deb": deb, "wheel": wheel, "interpreter": f"{dist} {version}", "module": module}


def start_setup_pi(home: Path, userland: Userland, emulator: Emulator, wheel: Path, standins: dict[str, Any],
                   work: Path) -> tuple[subprocess.Popen, Path]:
    """device/setup-pi.sh --dry-run in the emulated root, with the stand-in pair files (in the background)."""
    out = work / f"setup-pi-{userland.suite}.log"
    cmd = ["bash", str(SETUP_PI), "--dry-run", "--emulator", " ".join(emulator.prefix),
           "--python", str(emulator.root / "usr/bin/python3"), "--os-release", str(emulator.root / "etc/os-release"),
           "--venv", str(home / "setup-pi-venv"), "--wheel", str(wheel), "--pairs", str(standins["table"]),
           "--libedgetpu-deb", str(standins["deb"]), "--interpreter-wheel", str(standins["wheel"])]
    env = emulator.env(work / "probe-cache" / f"setup-pi-{userland.suite}")
    handle = open(out, "w")  # noqa: SIM115 (closed with the process)
    handle.write("$ " + " ".join(cmd) + "\n")
    handle.flush()
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, text=True)
    proc.log_handle = handle  # type: ignore[attr-defined]
    proc.started = time.monotonic()  # type: ignore[attr-defined]
    return proc, out


SETUP_PI_STEPS = 7


def finish_setup_pi(proc: subprocess.Popen, log_path: Path, userland: Userland, standins: dict[str, Any],
                    report: Report, data: dict[str, Any], timeout: float = 2400) -> None:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    proc.log_handle.close()  # type: ignore[attr-defined]
    seconds = round(time.monotonic() - proc.started, 1)  # type: ignore[attr-defined]
    text = log_path.read_text(errors="replace")
    installed = next((line.strip() for line in text.splitlines() if line.strip().startswith("installed:")), "")
    steps = [line.strip() for line in text.splitlines() if line.startswith("==> [")]
    data["setup_pi"] = {"exit_code": code, "log": str(log_path), "steps": steps, "installed": installed,
                        "pair": next((line.strip() for line in text.splitlines() if "pair STAND-IN" in line), ""),
                        "verified": [line.strip() for line in text.splitlines() if "sha256 verified" in line],
                        "skipped": [line.strip() for line in text.splitlines() if "[dry-run] skipped" in line],
                        "doctor": "tested pair" in text and "result:" in text,
                        "standin_interpreter": standins["interpreter"], "seconds": seconds}
    ok = (code == 0 and "dry run done" in text and standins["interpreter"] in installed
          and len(steps) == SETUP_PI_STEPS and len(data["setup_pi"]["verified"]) == 2 and data["setup_pi"]["doctor"])
    report.check(f"{userland.suite}: device/setup-pi.sh --dry-run with the stand-in pair files",
                 ok, f"exit {code} after {seconds:.0f} s, {len(steps)}/{SETUP_PI_STEPS} steps, "
                 f"{installed or 'no install line'}"
                 + ("" if ok else "\n" + "\n".join(text.strip().splitlines()[-15:])))


def doctor_standins(bundle: Path, work: Path) -> tuple[Path, Path, Path]:
    """For ``doctor BUNDLE`` under emulation: a copy of ``bundle`` whose manifest also lists its CPU model as
    its Edge TPU model (a STAND-IN: no compiler ran), and a STAND-IN libedgetpu.so.1 that is not a library
    (an aarch64 one cannot be built here): the probe's child starts under the emulator and fails to load it."""
    dst = work / "edgetpu-standin" / bundle.name
    shutil.copytree(bundle, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    standin = "model_int8_edgetpu.tflite"
    shutil.copy(dst / manifest["models"]["cpu"]["file"], dst / standin)
    manifest["models"]["edgetpu"] = dict(manifest["models"]["cpu"], file=standin)
    manifest["files"][standin] = sha256_of(dst / standin)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    library = work / "not-a-library" / "libedgetpu.so.1"
    library.parent.mkdir(parents=True)
    library.write_text("STAND-IN for a broken libedgetpu: not a shared library\n")
    return dst, library, dst / manifest["models"]["cpu"]["file"]


def doctor_steps(standins: tuple[Path, Path, Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The emulated process's steps for the doctor: before anything else is imported, doctor as a Pi user runs
    it (it must import nothing heavy); at the end, doctor BUNDLE with a libedgetpu that cannot load (both models
    probed in children under the emulator), then a probe with EDGEKIT_PROBE_LAUNCHER unset."""
    bundle, library, cpu_model = standins
    return ([{"cli": ["doctor", "--json"]}],
            [{"cli": ["doctor", str(bundle), "--json"], "env": {"EDGEKIT_LIBEDGETPU": str(library)}},
             {"probe": {"model": str(cpu_model), "device": "cpu"},
              "env": {"EDGEKIT_PROBE_LAUNCHER": None}}])


def doctor_checks(userland: Userland, plain_run: dict[str, Any] | None, bundle_run: dict[str, Any] | None,
                  bare_run: dict[str, Any] | None, standins: tuple[Path, Path, Path], failure: str, report: Report,
                  data: dict[str, Any]) -> None:
    """edgekit doctor in the userland: its release and pair found, no heavy import, exit 1 (no Coral here);
    with a bundle, both models probed in children started through EDGEKIT_PROBE_LAUNCHER; without the
    launcher, a probe is the launcher's error (binfmt_misc is not there to run the child)."""
    def findings(step: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return {f["topic"]: f for f in json.loads(step["stdout"])["findings"]}  # type: ignore[index]
        return {}

    bundle, library, _ = standins
    plain, heavy = findings(plain_run), ",".join((plain_run or {}).get("heavy_modules", ["?"]))
    code = (plain_run or {}).get("exit_code")
    pair, release = plain.get("tested pair", {}), plain.get("OS release", {}).get("detail", "")
    data["doctor"] = {"exit_code": code, "heavy_modules": heavy, "findings": list(plain.values())}
    ok = (code == 1 and heavy == "" and f"VERSION_CODENAME={userland.suite}" in release and pair.get("status") == "info"
          and pair.get("detail", "").startswith(f"{userland.suite}-py{userland.python}"))
    report.check(f"{userland.suite}: edgekit doctor finds the release and its pair, imports nothing heavy",
                 ok, f"exit {code}; {release}; pair: {pair.get('detail', 'none')}; heavy modules: {heavy or 'none'}"
                 + ("" if ok else f"\n{plain_run}\n{failure}"))

    probes, code = findings(bundle_run), (bundle_run or {}).get("exit_code")
    tpu, cpu = probes.get("Edge TPU probe", {}), probes.get("CPU model probe", {})
    data["doctor_bundle"] = {"exit_code": code, "bundle": str(bundle), "libedgetpu": str(library),
                             "findings": list(probes.values())}
    ok = (code == 1 and tpu.get("status") == "fail" and str(library) in tpu.get("detail", "")
          and "while loading libedgetpu" in tpu.get("detail", "") and "matched" in tpu.get("fix", "")
          and cpu.get("status") == "ok" and "in a child process" in cpu.get("detail", ""))
    report.check(f"{userland.suite}: edgekit doctor BUNDLE probes both models in children under the emulator",
                 ok, f"exit {code}; Edge TPU probe ({library.name} STAND-IN that is not a library): "
                 f"{tpu.get('status')}: {tpu.get('detail')}; CPU model probe: {cpu.get('status')}: {cpu.get('detail')}"
                 + ("" if ok else f"\n{bundle_run}\n{failure}"))

    bare = (bare_run or {}).get("probe", {})
    data["probe_without_launcher"] = bare
    ok = bare.get("outcome") == "not-started" and bare.get("error") == "DeviceError" \
        and "EDGEKIT_PROBE_LAUNCHER" in bare.get("hint", "")
    report.check(f"{userland.suite}: without EDGEKIT_PROBE_LAUNCHER the probe's child cannot start, and says so",
                 ok, f"{bare.get('outcome')}: {bare.get('detail')}" + ("" if ok else f"\n{failure}"))


def shellcheck(tools: Tools, report: Report) -> None:
    if not tools.shellcheck:
        report.data["shellcheck"] = "not installed"
        log("  shellcheck not installed: device/setup-pi.sh not linted")
        return
    proc = run([tools.shellcheck, str(SETUP_PI)], check=False, timeout=120)
    report.check("shellcheck device/setup-pi.sh", proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-800:])


# --- main -------------------------------------------------------------------------------------------------


def summary(report: Report, duration: float) -> str:
    lines = ["", f"Raspberry Pi OS userlands under {report.data.get('tools', {}).get('qemu', 'qemu')} "
             f"(CPU {report.data.get('qemu_cpu')}): {'PASSED' if report.ok else 'FAILED'} in {duration:.0f} s"]
    for suite, data in report.data.get("userlands", {}).items():
        root, venv = data.get("root", {}), data.get("venv", {})
        lines.append(f"  {suite}: root {root.get('path')} ({'cached' if root.get('cached') else 'made now'}, "
                     f"Python {root.get('python')})")
        if venv:
            dists = venv.get("distributions", {})
            shown = ", ".join(f"{k} {v}" for k, v in sorted(dists.items()) if k in (
                "ai-edge-litert", "tflite-runtime", "numpy", "edgekit-sb3"))
            lines.append(f"    device extra: {shown} ({'cached' if venv.get('cached') else 'made now'})")
        setup = data.get("setup_pi", {})
        if setup:
            lines.append(f"    setup-pi.sh --dry-run: exit {setup.get('exit_code')}, {setup.get('installed')}")
        for b in data.get("bundles", []):
            c, v = b.get("comparison"), b.get("verify", {})
            if c:
                lines.append(f"    {b['label']}: {Path(b['bundle']).name}: max {c['max_steps']} steps (mean "
                             f"{c['mean_steps']}) over {c['observations']} observations, allowed {c['bound_steps']:g};"
                             f" host kernels max {c['host_kernels_max_steps']}; verify max {v.get('max_steps')}")
        doctor = data.get("doctor")
        if doctor:
            lines.append(f"    doctor: exit {doctor['exit_code']}, heavy modules: {doctor['heavy_modules'] or 'none'}")
        probes = {f["topic"]: f["status"] for f in data.get("doctor_bundle", {}).get("findings", [])}
        if probes:
            lines.append("    doctor BUNDLE (stand-ins): " + ", ".join(f"{k} {v}" for k, v in probes.items()))
    lines.append("  phases (the userlands' overlap): " + ", ".join(f"{k} {v:.0f} s" for k, v in report.phases.items()))
    failed = [c for c in report.checks if not c["ok"]]
    lines.append(f"  checks: {len(report.checks) - len(failed)}/{len(report.checks)} passed")
    for c in failed:
        lines.append(f"  ✗ {c['name']}: {c['detail']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run edgekit's device side on emulated Raspberry Pi OS userlands (Debian 12 and 13, arm64) "
        "and compare it with the host.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 passed, 1 a check failed, 77 skipped (tools missing), 2 usage.")
    p.add_argument("--userland", action="append", dest="userlands", choices=sorted(USERLANDS),
                   help="bookworm (Python 3.11) or trixie (Python 3.13); repeatable (default: both)")
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EDGEKIT_PI_ROOTFS") or DEFAULT_CACHE),
                   help=f"qemu, roots, venvs, stand-ins and bundles are kept here between runs (default: "
                   f"{DEFAULT_CACHE}, or $EDGEKIT_PI_ROOTFS)")
    p.add_argument("--bundle", type=Path, action="append", dest="bundles", metavar="DIR",
                   help="check this host-built bundle (repeatable; default: the shipped example and a DQN "
                   "CartPole built here)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the full report as JSON")
    p.add_argument("--install-tools", action="store_true",
                   help="apt-get install debootstrap and shellcheck when missing (root only) and fetch trixie's "
                   "qemu-user into the cache")
    p.add_argument("--qemu", default=None, metavar="PATH", help="the qemu-aarch64 to use (10 or newer)")
    p.add_argument("--mirror", default=None, help="Debian mirror for debootstrap and qemu (default: the host's)")
    p.add_argument("--tolerance-steps", type=float, default=DEFAULT_TOLERANCE_STEPS, metavar="N",
                   help="largest host/aarch64 difference allowed, in int8 output steps, or the host's own "
                   "kernel spread on the bundle (XNNPACK vs reference kernels) where that is larger; also "
                   "passed to `edgekit verify` (default: 3, verify's default)")
    p.add_argument("--strict", action="store_true",
                   help="allow exactly --tolerance-steps, however far the host's own kernels disagree")
    p.add_argument("--with-example", action="store_true",
                   help="with --bundle: check the shipped example (built here, cached) too")
    p.add_argument("--qemu-cpu", default="cortex-a72", metavar="CPU",
                   help="CPU model to emulate (default: cortex-a72, the Raspberry Pi 4's; cortex-a76 is the Pi 5's; "
                   "'' for qemu's default, max)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="userlands checked at once (default: as many as there are CPUs, at most 2): each mostly "
                   "waits on its emulated processes")
    p.add_argument("--iterations", type=int, default=200, help="edgekit bench iterations (default: 200)")
    p.add_argument("--skip-setup-pi", action="store_true", help="do not dry-run device/setup-pi.sh")
    p.add_argument("--fresh", action="store_true", help="remake the venvs (the roots are kept: remove them by hand)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch directory (results, logs)")
    args = p.parse_args(argv)
    for bundle in args.bundles or []:
        if not (bundle / "manifest.json").is_file():
            p.error(f"{bundle} is not a bundle (no manifest.json)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    report = Report()
    report.data["host"] = {"machine": platform.machine(), "python": platform.python_version()}
    cache = args.cache_dir.expanduser().resolve()
    work = Path(tempfile.mkdtemp(prefix="edgekit-pi-check-"))
    report.data["work_dir"] = str(work)
    code = 0
    try:
        with locked(cache / ".lock"):
            code = checks(args, cache, work, report)
    except Skip as exc:
        report.data["skipped"] = str(exc)
        log(f"skipped: {exc}")
        code = SKIP_EXIT
    except (Failure, subprocess.TimeoutExpired) as exc:
        report.check("setup", False, str(exc))
        code = 1
    except Exception as exc:  # a bug here: still report what ran
        import traceback

        report.check("internal error", False, "".join(traceback.format_exception(exc)).strip())
        code = 1
    duration = time.monotonic() - started
    report.data["duration_s"] = round(duration, 1)
    if code != SKIP_EXIT:
        print(summary(report, duration))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"ok": report.ok and code == 0, "exit_code": code, "checks": report.checks,
                                         "phases_s": report.phases, **report.data}, indent=2, default=str))
    if args.keep_work or code not in (0, SKIP_EXIT):
        log(f"scratch directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return code


def checks(args: argparse.Namespace, cache: Path, work: Path, report: Report) -> int:
    userlands = [USERLANDS[name] for name in (args.userlands or sorted(USERLANDS))]
    mirror = args.mirror or debian_mirror()
    with report.phase("tools"):
        roots_cached = all((cache / u.suite / "root.json").is_file() and (cache / u.suite / "root" / u.root_python)
                           .is_file() for u in userlands)
        tools = find_tools(args.install_tools, not roots_cached or not args.skip_setup_pi, cache, mirror, args.qemu)
        report.data["tools"] = {"qemu": qemu_version(tools.qemu)[1], "qemu_path": tools.qemu,
                                "debootstrap": tools.debootstrap, "shellcheck": tools.shellcheck}
        report.data["qemu_cpu"] = args.qemu_cpu or "qemu's default (max)"
    with report.phase("wheel"):
        wheel = build_wheel(work / "wheel")
        report.data["wheel"] = {"file": wheel.name, "requires": wheel_requirements(wheel)}
        log(f"  {wheel.name}")
    with report.phase("bundles"):
        bundles = [b.resolve() for b in args.bundles or []]
        if not bundles or args.with_example:
            bundles = [*default_bundles(cache, report, example_only=bool(bundles)), *bundles]
    with report.phase("host references"):  # once per run: both userlands and all their venvs are compared with it
        refs = [host_reference(bundle, work, args.tolerance_steps, args.strict) for bundle in bundles]
        doctor_files = doctor_standins(bundles[0], work)
    report.data["userlands"] = {u.suite: {} for u in userlands}
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(userlands)))
    report.data["jobs"] = jobs
    with report.phase("userlands"), ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="userland") as pool:
        futures = [pool.submit(check_userland, userland, args, cache, work, tools, mirror, wheel, refs, doctor_files,
                               report) for userland in userlands]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    report.data["tolerance_steps"] = args.tolerance_steps
    report.data["strict"] = args.strict
    shellcheck(tools, report)
    return 0 if report.ok else 1


def check_userland(userland: Userland, args: argparse.Namespace, cache: Path, work: Path, tools: Tools, mirror: str,
                   wheel: Path, refs: list[HostReference], doctor_files: tuple[Path, Path, Path],
                   report: Report) -> None:
    """Every check in one userland (the userlands run at once, up to --jobs: each mostly waits on qemu)."""
    data = report.data["userlands"][userland.suite]
    home = cache / userland.suite
    if args.fresh:
        for stale in (home / "venv", home / "venv.json", home / "setup-pi-venv"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    with report.phase(f"{userland.suite} root"):
        emulator = ensure_root(home, userland, tools, mirror, data, args.qemu_cpu or None)
    setup_pi = None
    if not args.skip_setup_pi:
        with report.phase(f"{userland.suite} stand-ins"):
            standins = standin_pairs(cache, userland, tools)
        setup_pi = start_setup_pi(home, userland, emulator, wheel, standins, work)
    results: list[dict[str, Any]] = []
    data["bundles"] = results
    try:
        with report.phase(f"{userland.suite} device venv"):
            python = ensure_device_venv(home, userland, emulator, wheel, report, data)
        with report.phase(f"{userland.suite} device checks ({len(refs)} bundles, doctor)"):
            doctor_first, doctor_last = doctor_steps(doctor_files)
            found, before, after, failure = check_venv(refs, emulator, python, work, args.tolerance_steps,
                                                       args.iterations, report, f"{userland.suite} device extra",
                                                       "ai_edge_litert", [{"distributions": True}, *doctor_first],
                                                       doctor_last)
            results += found
            venv_checks(userland, (before[0] or {}).get("distributions", {}), report, data)
            doctor_checks(userland, before[1], after[0], after[1], doctor_files, failure, report, data)
    finally:
        if setup_pi is not None:
            with report.phase(f"{userland.suite} setup-pi.sh --dry-run (waiting)"):
                finish_setup_pi(*setup_pi, userland, standins, report, data)
    if setup_pi is not None and data["setup_pi"]["exit_code"] == 0:
        # The pair's interpreter API (its PyPI stand-in) in the venv setup-pi.sh made: the first bundle.
        with report.phase(f"{userland.suite} pair-API check {refs[0].bundle.name}"):
            results += check_venv(refs[:1], emulator, home / "setup-pi-venv" / "bin" / "python", work,
                                  args.tolerance_steps, args.iterations, report,
                                  f"{userland.suite} setup-pi venv ({standins['interpreter']}, stand-in)",
                                  standins["module"])[0]
    diffs = [r["comparison"]["max_steps"] for r in results if "comparison" in r]
    data["largest_difference_steps"] = max(diffs) if diffs else None


if __name__ == "__main__":
    sys.exit(main())
