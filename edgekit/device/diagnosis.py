"""Judge the facts `edgekit doctor` read: would the Edge TPU path work here, and if not, what fixes it.

Pure functions from ``Facts`` (and the pair table) to ``Finding``s, so each verdict is tested on facts a
test writes, without a Pi or a plug. A ``fail`` finding means the Edge TPU path would not work (doctor
exits non-zero); ``warn`` means it may work but something is off; ``ok``/``info`` say what was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgekit.device.facts import Facts, InstalledInterpreter
from edgekit.device.pairs import Pair, PairTable

OK, INFO, WARN, FAIL, SKIP = "ok", "info", "warn", "fail", "skip"
SETUP_FIX = "run device/setup-pi.sh from edgekit's checkout: it installs the tested pair for this OS and Python"
RULE_FIX = ("the libedgetpu package installs a udev rule for both ids; without it: sudo install -m 0644 "
            "device/99-edgetpu-accelerator.rules /etc/udev/rules.d/ && sudo udevadm control --reload-rules "
            "&& sudo udevadm trigger, then replug the accelerator")
PEAK_MA, PI5_USB_DEFAULT_MA = 900, 600


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report."""

    topic: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "status": self.status, "detail": self.detail, "fix": self.fix}


def diagnose(facts: Facts, table: PairTable) -> list[Finding]:
    """Every finding, in the order a person would check them."""
    pair = table.find(facts.os.codename, facts.python.minor, facts.python.machine) if facts.os else None
    return [
        os_finding(facts),
        python_finding(facts),
        pair_finding(facts, table, pair),
        interpreter_finding(facts, pair),
        numpy_finding(facts, pair),
        libedgetpu_finding(facts, table, pair),
        *usb_findings(facts),
        *board_findings(facts),
    ]


def os_finding(facts: Facts) -> Finding:
    if facts.os is None:
        return Finding("OS release", WARN, "no /etc/os-release: cannot tell which release this is")
    return Finding("OS release", INFO, f"{facts.os.pretty_name or facts.os.id} (VERSION_CODENAME="
                   f"{facts.os.codename or 'none'})")


def python_finding(facts: Facts) -> Finding:
    return Finding("Python", INFO, f"{facts.python.version} on {facts.python.machine} ({facts.python.executable})")


def pair_finding(facts: Facts, table: PairTable, pair: Pair | None) -> Finding:
    if pair is None:
        system = (f"{facts.os.codename if facts.os else 'an unknown release'} with Python {facts.python.minor} "
                  f"on {facts.python.machine}")
        return Finding("tested pair", FAIL, f"no tested libedgetpu/interpreter pair for {system}",
                       f"use a supported system: {'; '.join(table.supported())} (Raspberry Pi OS 64-bit with its "
                       "own python3); --device cpu runs the CPU int8 model anywhere")
    return Finding("tested pair", INFO, f"{pair.id}: libedgetpu {pair.libedgetpu_version} with "
                   f"{pair.interpreter.distribution} {pair.interpreter.version} (TensorFlow {pair.tensorflow})")


def _same(installed: InstalledInterpreter | None, pair: Pair) -> bool:
    return (installed is not None and installed.distribution == pair.interpreter.distribution
            and installed.version == pair.interpreter.version)


def interpreter_finding(facts: Facts, pair: Pair | None) -> Finding:
    chosen = facts.default_interpreter
    listed = ", ".join(f"{i.distribution} {i.version or '?'}" for i in facts.interpreters) or "none"
    if chosen is None:
        return Finding("interpreter", FAIL, "no TFLite interpreter is installed",
                       SETUP_FIX if pair else "pip install ai-edge-litert (CPU only)")
    detail = f"edgekit uses {chosen.distribution} {chosen.version or '?'} (installed: {listed})"
    if pair is None or _same(chosen, pair):
        return Finding("interpreter", OK if pair else INFO, detail)
    other = next((i for i in facts.interpreters if _same(i, pair)), None)
    if other is not None:
        return Finding("interpreter", FAIL, f"{detail}; the pair's {other.distribution} {other.version} is "
                       f"installed too but comes later in edgekit's order",
                       f"pass --interpreter {other.module} to edgekit run/bench/verify, or pip uninstall "
                       f"{chosen.distribution} from this environment")
    return Finding("interpreter", FAIL, f"{detail}; the tested pair's is {pair.interpreter.distribution} "
                   f"{pair.interpreter.version}, built from the TensorFlow release its libedgetpu was built from",
                   SETUP_FIX)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def requirement_met(version: str, requirement: str) -> bool | None:
    """``numpy<2`` / ``numpy>=2.1`` / ``numpy==1.26``: True/False, or None when not understood.

    Compared on as many release numbers as the requirement gives (``2.0.1 < 2`` is False).
    """
    match = re.match(r"^\s*[\w.-]+\s*(>=|==|<)\s*([\d.]+)\s*$", requirement)
    if not match:
        return None
    want = _version_tuple(match.group(2))
    have = (_version_tuple(version) + (0,) * len(want))[:len(want)]
    return {"<": have < want, ">=": have >= want, "==": have == want}[match.group(1)]


def numpy_finding(facts: Facts, pair: Pair | None) -> Finding:
    if facts.numpy is None:
        return Finding("numpy", FAIL, "numpy is not installed", SETUP_FIX)
    wanted = [r for r in (pair.interpreter.requires if pair else ()) if r.replace(" ", "").startswith("numpy")]
    broken = [r for r in wanted if requirement_met(facts.numpy, r) is False]
    if broken and _same(facts.default_interpreter, pair):  # type: ignore[arg-type]
        return Finding("numpy", FAIL, f"numpy {facts.numpy}; {pair.interpreter.distribution} "  # type: ignore[union-attr]
                       f"{pair.interpreter.version} needs {', '.join(broken)}",  # type: ignore[union-attr]
                       f"pip install '{broken[0]}' in this environment (or run device/setup-pi.sh again)")
    return Finding("numpy", OK, f"numpy {facts.numpy}")


def libedgetpu_finding(facts: Facts, table: PairTable, pair: Pair | None) -> Finding:
    lib = facts.libedgetpu
    if lib.path is None:
        installed = f" ({lib.package} {lib.version} is registered with dpkg, but its file is missing)" \
            if lib.package else ""
        return Finding("libedgetpu", FAIL, f"libedgetpu.so.1 not found{installed}",
                       SETUP_FIX + "; or set EDGEKIT_LIBEDGETPU=PATH for a library installed elsewhere")
    where = f"{lib.path}" + (" (EDGEKIT_LIBEDGETPU)" if lib.from_env else "")
    if lib.version is None:
        return Finding("libedgetpu", WARN, f"{where}: version unknown (not installed by a Debian package), so "
                       "which TensorFlow it was built with is unknown",
                       "give a bundle with an Edge TPU model: the child-process probe loads it safely")
    detail = f"{where}: {lib.package} {lib.version}"
    coral_version = str(table.coral_apt.get("libedgetpu_version", "16.0"))
    if lib.version == coral_version or lib.version.startswith(coral_version + "-"):
        return Finding("libedgetpu", FAIL, f"{detail} is Coral's own build against TensorFlow 2.5: with "
                       "any current interpreter the delegate crashes the process (SIGSEGV; tensorflow/tensorflow"
                       "#62371, google-coral/edgetpu#812)", SETUP_FIX + " (it replaces this package)")
    if pair is None:
        return Finding("libedgetpu", WARN, f"{detail}; no tested pair for this system to compare with")
    if lib.version != pair.libedgetpu_version:
        known = [p.tensorflow for p in table.by_libedgetpu_version(lib.version)]
        built = f"built with TensorFlow {known[0]}" if known else "not in the pair table"
        return Finding("libedgetpu", FAIL, f"{detail} ({built}); this system's tested pair has "
                       f"{pair.libedgetpu_version}", SETUP_FIX)
    if not _same(facts.default_interpreter, pair):
        return Finding("libedgetpu", WARN, f"{detail}, built with TensorFlow {pair.tensorflow}: matches the "
                       "table, but not the interpreter edgekit uses (see interpreter)")
    return Finding("libedgetpu", OK, f"{detail}, built with TensorFlow {pair.tensorflow} like the interpreter")


def usb_findings(facts: Facts) -> list[Finding]:
    if not facts.coral_usb:
        if facts.pci_edgetpu:
            return [Finding("Coral device", OK, f"PCIe/M.2 Edge TPU: {', '.join(facts.pci_edgetpu)}")]
        return [Finding("Coral USB Accelerator", FAIL, "none in /sys/bus/usb/devices (looked for 1a6e:089a and "
                        "18d1:9302)", "plug it into a USB 3 (blue) port; `lsusb` should list it")]
    out = []
    user = facts.user
    for dev in facts.coral_usb:
        speed = f", {dev.speed_mbps} Mbit/s" if dev.speed_mbps else ""
        detail = f"{dev.vendor}:{dev.product} ({dev.state}) at {dev.sysfs}{speed}"
        if dev.speed_mbps is not None and dev.speed_mbps < 5000:
            out.append(Finding("Coral USB Accelerator", WARN, f"{detail}: on a USB 2 port",
                               "plug it into a USB 3 (blue) port: every transfer is faster"))
        else:
            out.append(Finding("Coral USB Accelerator", OK, detail))
        node = dev.node
        if node is None:
            out.append(Finding("USB access", WARN, f"no device node for {dev.sysfs} under /dev/bus/usb"))
            continue
        owner = f"{node.path} is {node.group or node.gid} mode {node.mode:04o}"
        if node.accessible:
            out.append(Finding("USB access", OK, f"{owner}: {user.name} may open it"))
        elif user.in_plugdev_file and not user.in_plugdev_now:
            out.append(Finding("USB access", FAIL, f"{owner}: {user.name} is in plugdev, but not in this login",
                               "log out and in again (or reboot) so that the plugdev group applies"))
        elif node.group != "plugdev":
            out.append(Finding("USB access", FAIL, f"{owner}: the udev rule did not give it to plugdev",
                               "unplug and replug the accelerator after installing libedgetpu; " + RULE_FIX))
        else:
            out.append(Finding("USB access", FAIL, f"{owner}: {user.name} is not in plugdev",
                               f"sudo usermod -aG plugdev {user.name}, then log out and in again"))
    if facts.udev_rules:
        out.append(Finding("udev rule", OK, ", ".join(facts.udev_rules)))
    else:
        out.append(Finding("udev rule", WARN, "no udev rule names both Coral ids (1a6e and 18d1)", RULE_FIX))
    return out


def board_findings(facts: Facts) -> list[Finding]:
    board = facts.board
    if board.model is None:
        return [Finding("board", INFO, "not a Raspberry Pi (no /proc/device-tree/model)")]
    out = [Finding("board", INFO, board.model)]
    if not board.is_pi5:
        return out
    supply = board.supply_max_current_ma
    if board.usb_max_current_enable or (supply is not None and supply >= 5000):
        why = "usb_max_current_enable=1" if board.usb_max_current_enable else f"a {supply / 1000:g} A supply"
        out.append(Finding("USB current", OK, f"Pi 5 with {why}: 1.6 A for USB devices"))
    else:
        known = f" (the firmware reports a {supply} mA supply)" if supply is not None else ""
        where = board.config_txt or "/boot/firmware/config.txt"
        out.append(Finding("USB current", WARN, f"Pi 5 limits USB devices to {PI5_USB_DEFAULT_MA} mA in total "
                           f"without a 5 A supply{known}; the Coral draws up to {PEAK_MA} mA at peak and can "
                           "drop off the bus under load",
                           f"use the official 5 A supply, or add usb_max_current_enable=1 to {where} and reboot "
                           "(only with a supply that can deliver it)"))
    return out


def verdict(findings: list[Finding]) -> bool:
    """True when nothing stops the Edge TPU path."""
    return not any(f.status == FAIL for f in findings)
