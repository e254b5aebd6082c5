"""The one home of a bundle's layout: its file names, the schema ids, and how the manifest is written.

Every package that reads or writes a bundle asks this module: the build's stages
(``stages.write_bundle``), the report, the Edge TPU compile step and the runtime.
Light (standard library only): the device imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar


class _Manifest(Protocol):
    """What the writer needs of ``edgekit.bundle.manifest.Manifest`` (which imports this module's names)."""

    files: dict[str, str]

    def to_json(self) -> str: ...

    @classmethod
    def from_dict(cls, data: Any) -> Any: ...


M = TypeVar("M", bound=_Manifest)

# --- file names ---------------------------------------------------------------------------------------------
MANIFEST = "manifest.json"  # the bundle's record of everything else (edgekit.bundle.manifest)
CPU_MODEL = "model_int8.tflite"  # the fully int8 model every interpreter runs
EDGETPU_MODEL = "model_int8_edgetpu.tflite"  # the same model compiled by edgetpu_compiler
EDGETPU_COMPILE_LOG = "edgetpu_compile.log"  # the compiler's command line, output and own log
ONNX_MODEL = "policy.onnx"  # the conditioned float actor: the report's reference where SB3 is absent
CALIBRATION = "calibration.npz"  # calibration and held-out observations, to redo a report or bench on them
VERIFY = "verify.npz"  # held-out observations with the host's int8 outputs, for `edgekit verify`
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

# --- schema ids -----------------------------------------------------------------------------------------------
BUNDLE_FORMAT = "edgekit-bundle"  # manifest.json's "format": what makes a directory a bundle
BUNDLE_FORMAT_VERSION = 1
REPORT_SCHEMA = "edgekit-quantization-report"  # report.json's "schema"
REPORT_SCHEMA_VERSION = 1  # bumped when a report field is removed or retyped
BUILD_REPORT_SCHEMA = "edgekit-build-report"  # the build's own section, under "build" in report.json

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` except the manifest, by relative path."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            out[path.relative_to(root).as_posix()] = sha256_file(path)
    return out


def write_manifest(bundle_dir: Path, manifest: _Manifest) -> None:
    """Write ``manifest.json`` in one rename, after checking the new text parses back into a manifest:
    a reader never sees half a manifest, and a manifest edgekit could not read is never written."""
    text = manifest.to_json()
    type(manifest).from_dict(json.loads(text))
    write_text_atomic(Path(bundle_dir) / MANIFEST, text)


def write_text_atomic(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` in one rename (a hidden temporary file beside it, synced first,
    keeping the old file's mode): a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def record_files(bundle_dir: Path, manifest: M, names: Iterable[str]) -> M:
    """``manifest`` with the sha256 of ``names`` (files just written into ``bundle_dir``), written."""
    files = {**manifest.files, **{name: sha256_file(Path(bundle_dir) / name) for name in names}}
    updated = replace(manifest, files=files)
    write_manifest(bundle_dir, updated)
    return updated
