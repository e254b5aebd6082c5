"""The table of tested runtime pairs: one libedgetpu and one TFLite interpreter per OS release and Python.

A libedgetpu and an interpreter built from different TensorFlow commits can crash the process when the
Edge TPU delegate loads, so a Pi gets a *pair* built from one TensorFlow release. The facts live in
``pairs.json`` beside this file (package data, so an installed wheel has it too); this module reads
them for ``edgekit doctor`` and, run as a script, for ``device/setup-pi.sh``::

    python3 -m edgekit.device.pairs select --codename trixie --python 3.13 --arch aarch64 [--variant max]
    python3 -m edgekit.device.pairs list
    python3 -m edgekit.device.pairs check FILE      # a maintainer's new table: is it well formed?

``setup-pi.sh`` runs it with ``PYTHONPATH`` set to the checkout or to the wheel it installs, before
edgekit is installed, so this module imports nothing but the standard library.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLE_FORMAT = 1
VARIANTS = ("std", "max")
EXIT_UNKNOWN = 3  # select: no tested pair for this system
# uname -m / platform.machine() -> Debian architecture, the table's key.
_DEBIAN_ARCH = {"aarch64": "arm64", "arm64": "arm64", "armv7l": "armhf", "armhf": "armhf", "x86_64": "amd64",
                "amd64": "amd64"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PairTableError(ValueError):
    """The pair table is not well formed (a maintainer's edit went wrong)."""


@dataclass(frozen=True)
class Asset:
    """One downloadable file: its name, where it is published and, where known, its sha256."""

    file: str
    url: str
    sha256: str | None


@dataclass(frozen=True)
class Package:
    """A libedgetpu Debian package (std or max) of a pair."""

    name: str
    asset: Asset


@dataclass(frozen=True)
class Interpreter:
    """The interpreter wheel of a pair and what it needs next to it (e.g. a numpy range)."""

    distribution: str
    module: str
    version: str
    asset: Asset
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pair:
    """A libedgetpu and an interpreter built from one TensorFlow release, for one OS, Python and arch."""

    id: str
    codename: str
    os_name: str
    python: str
    arch: str
    tensorflow: str
    libedgetpu_version: str
    libedgetpu_release: str
    libedgetpu: dict[str, Package]
    interpreter: Interpreter
    pycoral: Asset | None
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.codename} (Python {self.python}, {self.arch})"


@dataclass(frozen=True)
class PairTable:
    pairs: tuple[Pair, ...]
    coral_apt: dict[str, Any] = field(default_factory=dict)

    def find(self, codename: str, python: str, arch: str) -> Pair | None:
        """The pair for this OS release (VERSION_CODENAME), Python (major.minor) and architecture."""
        arch = debian_arch(arch)
        python = ".".join(python.split(".")[:2])
        return next((p for p in self.pairs if (p.codename, p.python, p.arch) == (codename, python, arch)), None)

    def supported(self) -> list[str]:
        return [p.describe() for p in self.pairs]

    def by_libedgetpu_version(self, version: str) -> list[Pair]:
        return [p for p in self.pairs if p.libedgetpu_version == version]


def debian_arch(machine: str) -> str:
    """``aarch64`` -> ``arm64`` (the name Debian packages and this table use)."""
    return _DEBIAN_ARCH.get(machine, machine)


def default_table_text() -> str:
    """pairs.json as shipped: from the checkout, the installed package, or a wheel on PYTHONPATH."""
    from importlib import resources

    return resources.files("edgekit.device").joinpath("pairs.json").read_text(encoding="utf-8")


def load_table(path: str | Path | None = None) -> PairTable:
    """The shipped table, or the one at ``path`` (a maintainer trying a new pair, or a test)."""
    text = Path(path).read_text(encoding="utf-8") if path is not None else default_table_text()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PairTableError(f"{path or 'pairs.json'} is not JSON: {exc}") from None
    return parse_table(data)


def parse_table(data: Any) -> PairTable:
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise PairTableError(f"a pair table needs \"format\": {TABLE_FORMAT}")
    raw_pairs = data.get("pairs")
    if not isinstance(raw_pairs, list) or not raw_pairs:
        raise PairTableError("a pair table needs a non-empty list \"pairs\"")
    pairs = tuple(_pair(raw, i) for i, raw in enumerate(raw_pairs))
    seen: dict[tuple[str, str, str], str] = {}
    for pair in pairs:
        key = (pair.codename, pair.python, pair.arch)
        if key in seen:
            raise PairTableError(f"pairs {seen[key]} and {pair.id} are both for {pair.describe()}: keep one")
        seen[key] = pair.id
    return PairTable(pairs=pairs, coral_apt=dict(data.get("coral_apt") or {}))


def _need(raw: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(raw, dict) or raw.get(key) in (None, ""):
        raise PairTableError(f"{where}: missing \"{key}\"")
    return raw[key]


def _asset(raw: Any, where: str) -> Asset:
    file, url = _need(raw, "file", where), _need(raw, "url", where)
    sha256 = raw.get("sha256")
    if sha256 is not None and not _SHA256.match(str(sha256)):
        raise PairTableError(f"{where}: sha256 must be 64 lowercase hex digits or null, got {sha256!r}")
    if not str(url).startswith("https://") or not str(url).endswith("/" + str(file)):
        raise PairTableError(f"{where}: url must be https and end with the file name {file}")
    return Asset(file=str(file), url=str(url), sha256=sha256)


def _pair(raw: Any, index: int) -> Pair:
    where = f"pairs[{index}]"
    pair_id = str(_need(raw, "id", where))
    where = f"pair {pair_id}"
    os_info = _need(raw, "os", where)
    lib = _need(raw, "libedgetpu", where)
    packages = {v: Package(str(_need(lib[v], "package", f"{where} libedgetpu.{v}")),
                           _asset(lib[v], f"{where} libedgetpu.{v}")) for v in VARIANTS if v in lib}
    if "std" not in packages:
        raise PairTableError(f"{where}: libedgetpu needs at least the std package")
    interp = _need(raw, "interpreter", where)
    python = str(_need(raw, "python", where))
    if not re.match(r"^3\.\d+$", python):
        raise PairTableError(f"{where}: python must be MAJOR.MINOR, e.g. 3.11")
    pycoral = raw.get("pycoral")
    return Pair(
        id=pair_id,
        codename=str(_need(os_info, "codename", where)),
        os_name=str(os_info.get("name", "")),
        python=python,
        arch=debian_arch(str(_need(raw, "arch", where))),
        tensorflow=str(_need(raw, "tensorflow", where)),
        libedgetpu_version=str(_need(lib, "version", f"{where} libedgetpu")),
        libedgetpu_release=str(lib.get("release", "")),
        libedgetpu=packages,
        interpreter=Interpreter(
            distribution=str(_need(interp, "distribution", f"{where} interpreter")),
            module=str(_need(interp, "module", f"{where} interpreter")),
            version=str(_need(interp, "version", f"{where} interpreter")),
            asset=_asset(interp, f"{where} interpreter"),
            requires=tuple(str(r) for r in interp.get("requires") or ()),
        ),
        pycoral=_asset(pycoral, f"{where} pycoral") if pycoral else None,
        notes=tuple(str(n) for n in raw.get("notes") or ()),
    )


# --- the script setup-pi.sh runs ---------------------------------------------------------------------------


def shell_assignments(pair: Pair, variant: str) -> str:
    """``NAME=value`` lines for ``eval`` in setup-pi.sh (values quoted for the shell)."""
    lib = pair.libedgetpu[variant]
    values = {
        "PAIR_ID": pair.id,
        "PAIR_TENSORFLOW": pair.tensorflow,
        "LIBEDGETPU_PACKAGE": lib.name,
        "LIBEDGETPU_VERSION": pair.libedgetpu_version,
        "LIBEDGETPU_FILE": lib.asset.file,
        "LIBEDGETPU_URL": lib.asset.url,
        "LIBEDGETPU_SHA256": lib.asset.sha256 or "",
        "INTERPRETER_DIST": pair.interpreter.distribution,
        "INTERPRETER_MODULE": pair.interpreter.module,
        "INTERPRETER_VERSION": pair.interpreter.version,
        "INTERPRETER_FILE": pair.interpreter.asset.file,
        "INTERPRETER_URL": pair.interpreter.asset.url,
        "INTERPRETER_SHA256": pair.interpreter.asset.sha256 or "",
        "INTERPRETER_REQUIRES": " ".join(pair.interpreter.requires),
        "PYCORAL_FILE": pair.pycoral.file if pair.pycoral else "",
        "PYCORAL_URL": pair.pycoral.url if pair.pycoral else "",
        "PYCORAL_SHA256": (pair.pycoral.sha256 or "") if pair.pycoral else "",
    }
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m edgekit.device.pairs", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", metavar="FILE", help="a pair table other than the shipped one")
    sub = parser.add_subparsers(dest="command", required=True)
    select = sub.add_parser("select", help="print the pair for a system as shell assignments")
    select.add_argument("--codename", required=True, help="VERSION_CODENAME from /etc/os-release")
    select.add_argument("--python", required=True, help="MAJOR.MINOR")
    select.add_argument("--arch", required=True, help="uname -m or the Debian architecture")
    select.add_argument("--variant", choices=VARIANTS, default="std")
    sub.add_parser("list", help="the supported systems, one pair a line")
    check = sub.add_parser("check", help="read a table and say whether it is well formed")
    check.add_argument("file")
    args = parser.parse_args(argv)
    try:
        table = load_table(args.file if args.command == "check" else args.pairs)
    except (OSError, PairTableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "list":
        for pair in table.pairs:
            print(f"{pair.describe()}: libedgetpu {pair.libedgetpu_version} + {pair.interpreter.distribution} "
                  f"{pair.interpreter.version} (TensorFlow {pair.tensorflow}) [{pair.id}]")
        return 0
    if args.command == "check":
        print(f"{args.file}: {len(table.pairs)} pair(s), well formed")
        return 0
    pair = table.find(args.codename, args.python, args.arch)
    if pair is None:
        print(f"error: no tested libedgetpu/interpreter pair for {args.codename or 'an unknown release'} "
              f"(Python {args.python}, {debian_arch(args.arch)}); supported: {'; '.join(table.supported())}",
              file=sys.stderr)
        return EXIT_UNKNOWN
    if args.variant not in pair.libedgetpu:
        print(f"error: pair {pair.id} has no libedgetpu {args.variant} package", file=sys.stderr)
        return EXIT_UNKNOWN
    sys.stdout.write(shell_assignments(pair, args.variant))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
