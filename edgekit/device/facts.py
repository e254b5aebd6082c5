"""What `edgekit doctor` reads about this machine: OS, Python, interpreter, libedgetpu, Coral USB, board.

Facts only, no verdicts (``edgekit.device.diagnosis`` judges them). Everything is read from files under a
system root, ``/`` unless ``EDGEKIT_SYSROOT`` names another, so that a test can lay out a Raspberry Pi 5
with a Coral attached (``etc/os-release``, ``sys/bus/usb/devices``, ``dev/bus/usb``, ``proc/device-tree``,
``boot/firmware/config.txt``, ``var/lib/dpkg``, udev rules) without a plug. Nothing here imports an
interpreter, loads libedgetpu or opens the USB device: a broken libedgetpu can crash the process that
loads it, which is what the child-process probe is for.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import stat
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

SYSROOT_ENV = "EDGEKIT_SYSROOT"
LIBEDGETPU_ENV = "EDGEKIT_LIBEDGETPU"
LIBEDGETPU_FILE = "libedgetpu.so.1"
LIBEDGETPU_PACKAGES = ("libedgetpu1-std", "libedgetpu1-max", "libedgetpu1-legacy-std", "libedgetpu1-legacy-max")
# The Coral USB Accelerator enumerates as Global Unichip 1a6e:089a until libedgetpu loads its firmware,
# then as Google 18d1:9302.
CORAL_USB_IDS = {("1a6e", "089a"): "waiting for its firmware", ("18d1", "9302"): "firmware loaded"}
# The runtime's interpreter chain (edgekit.runtime.interpreters.BACKENDS): module -> distribution.
INTERPRETERS = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"),
                ("tensorflow", "tensorflow"))
_LIB_DIRS = ("usr/lib/aarch64-linux-gnu", "lib/aarch64-linux-gnu", "usr/lib/arm-linux-gnueabihf",
             "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/local/lib", "usr/lib", "lib")
_UDEV_DIRS = ("etc/udev/rules.d", "usr/lib/udev/rules.d", "lib/udev/rules.d")
_CONFIG_TXT = ("boot/firmware/config.txt", "boot/config.txt")


@dataclass(frozen=True)
class SystemRoot:
    """Where / is: the real one, or a directory laid out like it (tests)."""

    path: Path = Path("/")

    @classmethod
    def from_env(cls) -> SystemRoot:
        return cls(Path(os.environ.get(SYSROOT_ENV) or "/"))

    @property
    def is_real(self) -> bool:
        return self.path.resolve() == Path("/")

    def __truediv__(self, absolute: str) -> Path:
        return self.path / absolute.lstrip("/")

    def read(self, absolute: str) -> str | None:
        try:
            return (self / absolute).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


@dataclass(frozen=True)
class OSRelease:
    id: str
    codename: str
    pretty_name: str


@dataclass(frozen=True)
class PythonFacts:
    version: str  # e.g. 3.11.2
    machine: str  # e.g. aarch64
    executable: str

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True)
class InstalledInterpreter:
    module: str
    distribution: str
    version: str | None


@dataclass(frozen=True)
class LibEdgeTPU:
    path: str | None  # the file the dynamic loader would find, or EDGEKIT_LIBEDGETPU
    package: str | None  # the Debian package that installed it
    version: str | None  # that package's version, e.g. 16.0tf2.17.1-1
    from_env: bool = False


@dataclass(frozen=True)
class UsbNode:
    path: str
    mode: int
    uid: int
    gid: int
    group: str | None
    accessible: bool  # by this process's user and groups


@dataclass(frozen=True)
class CoralUsb:
    sysfs: str
    vendor: str
    product: str
    state: str
    speed_mbps: int | None
    node: UsbNode | None


@dataclass(frozen=True)
class UserFacts:
    name: str
    uid: int
    gids: tuple[int, ...]
    plugdev_gid: int | None
    in_plugdev_file: bool  # listed in etc/group (applies at the next login)

    @property
    def in_plugdev_now(self) -> bool:
        return self.plugdev_gid is not None and self.plugdev_gid in self.gids


@dataclass(frozen=True)
class BoardFacts:
    model: str | None
    config_txt: str | None  # its path, if found
    usb_max_current_enable: bool | None  # None: no config.txt
    supply_max_current_ma: int | None  # what the Pi 5 firmware reports, where it does

    @property
    def is_pi5(self) -> bool:
        return bool(self.model) and ("Raspberry Pi 5" in self.model or "Compute Module 5" in self.model
                                     or "Raspberry Pi 500" in self.model)


@dataclass(frozen=True)
class Facts:
    root: str
    os: OSRelease | None
    python: PythonFacts
    interpreters: tuple[InstalledInterpreter, ...]
    numpy: str | None
    libedgetpu: LibEdgeTPU
    coral_usb: tuple[CoralUsb, ...]
    pci_edgetpu: tuple[str, ...]
    udev_rules: tuple[str, ...]  # rule files that give both Coral USB ids a group
    user: UserFacts
    board: BoardFacts
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def default_interpreter(self) -> InstalledInterpreter | None:
        """The one the runtime takes without --interpreter: the first of its chain that is installed."""
        return self.interpreters[0] if self.interpreters else None


# --- readers ------------------------------------------------------------------------------------------------


def read_os_release(root: SystemRoot) -> OSRelease | None:
    text = root.read("/etc/os-release") or root.read("/usr/lib/os-release")
    if text is None:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return OSRelease(id=values.get("ID", ""), codename=values.get("VERSION_CODENAME", ""),
                     pretty_name=values.get("PRETTY_NAME", values.get("NAME", "")))


def read_python(root: SystemRoot) -> PythonFacts:
    machine = platform.machine()
    if not root.is_real:  # a laid-out root says which machine it is
        machine = (root.read("/proc/sys/kernel/arch") or machine).strip() or machine
    return PythonFacts(version=platform.python_version(), machine=machine, executable=sys.executable)


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_interpreters() -> tuple[InstalledInterpreter, ...]:
    """The interpreter packages installed here, in the runtime's order; none is imported."""
    found = []
    for module, dist in INTERPRETERS:
        if importlib.util.find_spec(module) is not None:
            found.append(InstalledInterpreter(module, dist, _dist_version(dist)))
    return tuple(found)


def _dpkg_packages(root: SystemRoot) -> dict[str, str]:
    """Installed libedgetpu packages -> version, from dpkg's status file."""
    text = root.read("/var/lib/dpkg/status") or ""
    out = {}
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith(" "):
                fields[key.strip()] = value.strip()
        if fields.get("Package") in LIBEDGETPU_PACKAGES and fields.get("Status", "").endswith(" installed"):
            out[fields["Package"]] = fields.get("Version", "")
    return out


def _package_file(root: SystemRoot, package: str) -> str | None:
    info = root / "/var/lib/dpkg/info"
    for listing in sorted(info.glob(f"{package}.list")) + sorted(info.glob(f"{package}:*.list")):
        for line in listing.read_text(errors="replace").splitlines():
            if line.endswith("/" + LIBEDGETPU_FILE):
                return line.strip()
    return None


def read_libedgetpu(root: SystemRoot, env: dict[str, str] | None = None) -> LibEdgeTPU:
    env = os.environ if env is None else env
    packages = _dpkg_packages(root)
    package, version = next(iter(packages.items()), (None, None))
    override = env.get(LIBEDGETPU_ENV)
    if override:
        return LibEdgeTPU(path=override, package=None, version=None, from_env=True)
    if package is not None:
        path = _package_file(root, package)
        if path is not None and (root / path).exists():
            return LibEdgeTPU(path=path, package=package, version=version)
    search = ["/" + d for d in _LIB_DIRS]
    if root.is_real:  # where the dynamic loader looks first
        search = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d.startswith("/")] + search
    for directory in search:
        if (root / directory / LIBEDGETPU_FILE).exists():
            return LibEdgeTPU(path=f"{directory.rstrip('/')}/{LIBEDGETPU_FILE}", package=package, version=version)
    return LibEdgeTPU(path=None, package=package, version=version)


def _group_name(root: SystemRoot, gid: int) -> str | None:
    for line in (root.read("/etc/group") or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit() and int(parts[2]) == gid:
            return parts[0]
    return None


def node_accessible(mode: int, uid: int, gid: int, user_uid: int, user_gids: tuple[int, ...]) -> bool:
    """Whether a user may open a device node read-write, from its owner, group and mode bits."""
    if user_uid == 0:
        return True
    if uid == user_uid:
        return mode & 0o600 == 0o600
    if gid in user_gids:
        return mode & 0o060 == 0o060
    return mode & 0o006 == 0o006


def read_coral_usb(root: SystemRoot, user: UserFacts) -> tuple[CoralUsb, ...]:
    devices = root / "/sys/bus/usb/devices"
    found = []
    for entry in sorted(devices.iterdir()) if devices.is_dir() else []:
        vendor = _strip(entry / "idVendor")
        product = _strip(entry / "idProduct")
        state = CORAL_USB_IDS.get((vendor or "", product or ""))
        if state is None:
            continue
        speed = _strip(entry / "speed")
        busnum, devnum = _strip(entry / "busnum"), _strip(entry / "devnum")
        node = None
        if busnum and devnum and busnum.isdigit() and devnum.isdigit():
            path = f"/dev/bus/usb/{int(busnum):03d}/{int(devnum):03d}"
            try:
                st = (root / path).stat()
            except OSError:
                st = None
            if st is not None:
                node = UsbNode(path=path, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                               group=_group_name(root, st.st_gid),
                               accessible=node_accessible(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                                          user.uid, user.gids))
        found.append(CoralUsb(sysfs=entry.name, vendor=vendor or "", product=product or "", state=state,
                              speed_mbps=int(float(speed)) if speed and _is_number(speed) else None, node=node))
    return tuple(found)


def _strip(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_pci_edgetpu(root: SystemRoot) -> tuple[str, ...]:
    """PCIe/M.2 Edge TPUs (gasket/apex driver): /dev/apex_N."""
    return tuple("/dev/" + p.name for p in sorted((root / "/dev").glob("apex_*")))


def read_udev_rules(root: SystemRoot) -> tuple[str, ...]:
    """Rule files that name both Coral USB ids (the accelerator changes id when its firmware loads)."""
    found = []
    for directory in _UDEV_DIRS:
        for rule in sorted((root / directory).glob("*.rules")):
            text = rule.read_text(errors="replace").lower()
            active = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
            if "1a6e" in active and "18d1" in active:
                found.append("/" + directory + "/" + rule.name)
    return tuple(found)


def read_user(root: SystemRoot, uid: int | None = None, gids: tuple[int, ...] | None = None,
              name: str | None = None) -> UserFacts:
    uid = os.getuid() if uid is None else uid
    gids = tuple(os.getgroups()) + (os.getgid(),) if gids is None else gids
    if name is None:
        name = next((line.split(":")[0] for line in (root.read("/etc/passwd") or "").splitlines()
                     if len(line.split(":")) > 2 and line.split(":")[2] == str(uid)), str(uid))
    plugdev_gid, in_file = None, False
    for line in (root.read("/etc/group") or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == "plugdev" and parts[2].isdigit():
            plugdev_gid = int(parts[2])
            in_file = name in [m.strip() for m in parts[3].split(",") if m.strip()]
    return UserFacts(name=name, uid=uid, gids=tuple(gids), plugdev_gid=plugdev_gid, in_plugdev_file=in_file)


def read_board(root: SystemRoot) -> BoardFacts:
    model = root.read("/proc/device-tree/model")
    model = model.replace("\x00", "").strip() if model else None
    config_path, enabled = None, None
    for candidate in _CONFIG_TXT:
        text = root.read("/" + candidate)
        if text is not None:
            config_path, enabled = "/" + candidate, config_flag(text, "usb_max_current_enable")
            break
    supply = None
    try:
        raw = (root / "/proc/device-tree/chosen/power/max_current").read_bytes()
        if len(raw) == 4:
            supply = int.from_bytes(raw, "big")  # the Pi 5 firmware's negotiated supply current, in mA
    except OSError:
        pass
    return BoardFacts(model=model, config_txt=config_path, usb_max_current_enable=enabled,
                      supply_max_current_ma=supply)


def config_flag(text: str, key: str) -> bool:
    """Whether config.txt sets ``key=1`` in a line that applies (not commented out)."""
    value = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, setting = line.partition("=")
        if sep and name.strip() == key:
            value = setting.strip() == "1"  # the last setting wins
    return bool(value)


def read_numpy() -> str | None:
    return _dist_version("numpy")


def gather(root: SystemRoot | None = None, env: dict[str, str] | None = None, uid: int | None = None,
           gids: tuple[int, ...] | None = None) -> Facts:
    """Every fact doctor judges, read once."""
    root = root or SystemRoot.from_env()
    user = read_user(root, uid=uid, gids=gids)
    return Facts(
        root=str(root.path),
        os=read_os_release(root),
        python=read_python(root),
        interpreters=read_interpreters(),
        numpy=read_numpy(),
        libedgetpu=read_libedgetpu(root, env),
        coral_usb=read_coral_usb(root, user),
        pci_edgetpu=read_pci_edgetpu(root),
        udev_rules=read_udev_rules(root),
        user=user,
        board=read_board(root),
    )
