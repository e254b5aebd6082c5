"""Recognise an SB3 ``model.zip`` without unpickling anything: its members, their sizes, its ``data`` JSON.

The algorithm table decides from the policy class's module and the saved
hyper-parameters. Every member is size-checked before it is read: a zip bomb
(a small file that inflates to gigabytes) is refused by its declared sizes.
"""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.core.errors import ModelFileError
from edgekit.host.algorithms import AlgorithmSpec, detect_algorithm, policy_class_name

MAX_DATA_BYTES = 64 * 1024 * 1024  # the data JSON of a real model is well under 1 MiB
MAX_POLICY_BYTES = 2 * 1024 * 1024 * 1024
MAX_MEMBER_BYTES = 2 * 1024 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_MEMBERS = 1000
MAX_RATIO = 100  # SB3 stores members uncompressed (ratio 1); deflate reaches ~10 on real data
RATIO_FLOOR = 1024 * 1024  # a small member may compress well without harm


@dataclass(frozen=True)
class ModelFileInfo:
    """What the zip says about itself before anything is unpickled."""

    algorithm: AlgorithmSpec
    policy_class: str
    sb3_version: str
    data: dict[str, Any]


def inspect_model_zip(path: Path) -> ModelFileInfo:
    """Check that ``path`` is an SB3 model zip and name its algorithm."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a zip file, so not an SB3 model")
    members = _checked_members(path)
    if "data" not in members or "policy.pth" not in members:
        raise ModelFileError(f"{path} is a zip but not an SB3 model (no 'data' or no 'policy.pth' inside)")
    raw = read_member(path, "data")
    version = read_member(path, "_stable_baselines3_version").decode("utf-8", "replace").strip()[:64] \
        if "_stable_baselines3_version" in members else "unknown"
    try:
        data = _json_bounded(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: its 'data' member is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: its 'data' member is not an SB3 data object")
    return ModelFileInfo(
        algorithm=detect_algorithm(data),
        policy_class=policy_class_name(data),
        sb3_version=version,
        data=data,
    )


def read_member(path: Path, name: str) -> bytes:
    """One member's bytes; its declared size was checked by ``_checked_members`` and bounds the read."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    except Exception as exc:  # zipfile, zlib, bz2 and lzma raise many types for damaged archives
        raise ModelFileError(f"{path} is a damaged zip ({type(exc).__name__}: {exc})") from None


def _checked_members(path: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip's members, refused when their declared sizes or compression ratios look like a zip bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except Exception as exc:  # a damaged central directory
        raise ModelFileError(f"{path} is a damaged zip ({type(exc).__name__}: {exc})") from None
    limits = {"data": MAX_DATA_BYTES, "policy.pth": MAX_POLICY_BYTES, "_stable_baselines3_version": 1024}
    total = 0
    for info in infos:
        size = info.file_size
        total += size
        ratio = size / max(info.compress_size, 1)
        if size > limits.get(info.filename, MAX_MEMBER_BYTES) or (size > RATIO_FLOOR and ratio > MAX_RATIO):
            raise ModelFileError(
                f"{path}: member {info.filename!r} would inflate to {size} bytes (compression ratio {ratio:.0f}), "
                "too large for an SB3 model; refusing to read it (zip bomb?)",
                hint="pass the .zip written by SB3's model.save(...), not a repacked or altered file",
            )
    if len(infos) > MAX_MEMBERS or total > MAX_TOTAL_BYTES:
        raise ModelFileError(f"{path} holds {len(infos)} members, {total} bytes in all: too large for an SB3 model")
    return {info.filename: info for info in infos}


def _json_bounded(raw: bytes) -> object:
    """json.loads with a sane recursion limit (see ``edgekit.bundle.manifest``): a deeply nested hostile
    file must fail cleanly even after another library raised the limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, 2000))
    try:
        return json.loads(raw)
    finally:
        sys.setrecursionlimit(limit)
