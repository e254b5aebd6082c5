"""Where libedgetpu is and which build it is, found without loading it.

Loading a shared library runs its code, and a libedgetpu built against
another TensorFlow than the interpreter can crash the process that loads it
(``runtime.probe`` says why it only ever loads it in a child first). So the
serving process finds the file the dynamic loader would pick by looking, not
by ``dlopen``: ``EDGEKIT_LIBEDGETPU`` when set (tests, unusual installs), then
each ``LD_LIBRARY_PATH`` directory, the loader's cache (``ldconfig -p``) and
the default directories. The version is the Debian package that installed
the file, when one did (Coral's ``libedgetpu1-std 16.0``, or a matched pair's
``16.0tf2.17.1-1.bookworm``). Stdlib only.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from edgekit.core.errors import DeviceError

LIBRARY_ENV = "EDGEKIT_LIBEDGETPU"  # a path that overrides the search
# libedgetpu's file name per OS (Coral's packages).
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
_DEFAULT_DIRS = ("/lib", "/usr/lib", "/usr/local/lib")
_DPKG_INFO = Path("/var/lib/dpkg/info")
_DPKG_STATUS = Path("/var/lib/dpkg/status")
FIX_PAIR = ("install a libedgetpu and an interpreter built from the same TensorFlow release: the matched pairs "
            "are listed in device/README.md (device/setup-pi.sh installs one); or use --device cpu")


@dataclass(frozen=True)
class LibraryFile:
    """The libedgetpu file the loader would open."""

    path: str  # as found (a symlink such as libedgetpu.so.1, or EDGEKIT_LIBEDGETPU)
    resolved: str  # the file behind the symlinks
    package: str | None  # "libedgetpu1-std 16.0" when a Debian package installed it

    def identity(self) -> str:
        """sha256 of the file: what a cached probe of it is valid for."""
        digest = hashlib.sha256()
        with open(self.resolved, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def describe(self) -> str:
        return f"{self.resolved} ({self.package or 'version unknown: not installed by a Debian package'})"


def edgetpu_library_name(system: str | None = None) -> str:
    """libedgetpu's file name on this OS."""
    system = system or platform.system()
    if system not in EDGETPU_LIBRARY:
        raise DeviceError(f"the Edge TPU runtime is not available for {system}")
    return EDGETPU_LIBRARY[system]


def find_libedgetpu() -> LibraryFile:
    """The libedgetpu this process would load, or DeviceError when there is none (nothing is loaded)."""
    override = os.environ.get(LIBRARY_ENV, "")
    if override:
        if not os.path.isfile(override):
            raise DeviceError(f"{LIBRARY_ENV} names {override}, which is not a file",
                              hint=f"point {LIBRARY_ENV} at libedgetpu.so.1, or unset it")
        return library_file(override)
    name = edgetpu_library_name()
    for directory in _search_dirs():
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return library_file(candidate)
    cached = _loader_cache(name)
    if cached:
        return library_file(cached)
    raise DeviceError(f"the Edge TPU runtime library {name} is not installed",
                      hint=f"{FIX_PAIR}; {LIBRARY_ENV}=PATH names a library elsewhere")


def _search_dirs() -> list[str]:
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    if platform.system() == "Darwin":
        dirs += [d for d in os.environ.get("DYLD_LIBRARY_PATH", "").split(os.pathsep) if d]
        dirs += ["/opt/homebrew/lib"]
    return dirs + list(_DEFAULT_DIRS)


def _loader_cache(name: str) -> str | None:
    """The path ``ldconfig -p`` lists for ``name`` (the loader's cache holds the multiarch directories)."""
    import subprocess

    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig"):
        if not os.path.isfile(ldconfig):
            continue
        try:
            listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for line in listing.splitlines():
            soname, _, path = line.strip().partition(" => ")
            if soname.split(" (")[0] == name and os.path.isfile(path):
                return path
        return None
    return None


def library_file(path: str) -> LibraryFile:
    """``path`` described: the file behind it and the Debian package that installed it."""
    resolved = os.path.realpath(path)
    return LibraryFile(path=path, resolved=resolved, package=debian_package(path, resolved))


def debian_package(*paths: str) -> str | None:
    """'name version' of the Debian package that installed one of ``paths``, or None."""
    try:
        lists = [p for p in _DPKG_INFO.glob("*.list") if "edgetpu" in p.name]
    except OSError:
        return None
    wanted = set(paths)
    for listing in lists:
        try:
            files = set(listing.read_text(errors="replace").splitlines())
        except OSError:
            continue
        if files & wanted:
            package = listing.name[:-len(".list")].split(":")[0]
            return f"{package} {_dpkg_version(package) or '(version unknown)'}"
    return None


def _dpkg_version(package: str) -> str | None:
    try:
        status = _DPKG_STATUS.read_text(errors="replace")
    except OSError:
        return None
    for block in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") == package and fields.get("Version"):
            return fields["Version"]
    return None
