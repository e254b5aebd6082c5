"""STAND-IN libedgetpu libraries and bundles with an Edge TPU model entry, for the probe and fallback tests.

No libedgetpu and no Edge TPU exist on this machine. ``tests/native/fake_libedgetpu.c``
is compiled here with the system C compiler, once per session, into one
``libedgetpu.so.1`` per behaviour (segfault, hang, NULL delegate after an
error report, crash on load, do-nothing delegate). None drives a TPU; the
do-nothing one leaves every node to the interpreter's CPU kernels, so a
"TPU" policy opened through it computes exactly what the CPU model computes.

``edgetpu_bundle`` copies a bundle and records its CPU int8 model again as the
"edgetpu" model (a STAND-IN: no compiler ran, the file is the CPU model),
with its sha256 in the manifest, as ``edgekit compile`` records a compiled one.
Import the fixtures into a test module: ``from fake_libedgetpu import fake_libedgetpu, edgetpu_bundle``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from edgekit.bundle.layout import sha256_file

SOURCE = Path(__file__).parent / "native" / "fake_libedgetpu.c"
BEHAVIOURS = ("SEGFAULT", "HANG", "NULL", "CTOR", "NOOP")
EDGETPU_STANDIN = "model_int8_edgetpu.tflite"


@pytest.fixture(scope="session")
def fake_libedgetpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """behaviour -> the directory holding that stand-in's ``libedgetpu.so.1``."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in libedgetpu")
    root = tmp_path_factory.mktemp("fake-libedgetpu")
    dirs = {}
    for behaviour in BEHAVIOURS:
        out = root / behaviour.lower()
        out.mkdir()
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", f"-DFAKE_{behaviour}", "-o",
                        str(out / "libedgetpu.so.1"), str(SOURCE)], check=True, capture_output=True)
        dirs[behaviour] = out
    return dirs


def with_edgetpu_standin(src: Path, dst: Path) -> Path:
    """A copy of bundle ``src`` at ``dst`` whose manifest also lists the CPU model as its Edge TPU model."""
    shutil.copytree(src, dst)
    data = json.loads((dst / "manifest.json").read_text())
    shutil.copy(dst / data["models"]["cpu"]["file"], dst / EDGETPU_STANDIN)
    data["models"]["edgetpu"] = dict(data["models"]["cpu"], file=EDGETPU_STANDIN)
    data["files"][EDGETPU_STANDIN] = sha256_file(dst / EDGETPU_STANDIN)
    (dst / "manifest.json").write_text(json.dumps(data))
    return dst


@pytest.fixture(scope="session")
def edgetpu_bundle(built_bundle, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``edgetpu_bundle(name)``: the built bundle ``name`` with a stand-in Edge TPU model (once per session)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            dst = tmp_path_factory.mktemp("edgetpu-standin") / name
            cache[name] = with_edgetpu_standin(built_bundle(name).bundle_dir, dst)
        return cache[name]

    return get


def library_env(directory: Path, timeout: float = 3.0) -> dict[str, str]:
    """Environment that makes edgekit find the stand-in in ``directory`` the way the loader would."""
    return {"LD_LIBRARY_PATH": str(directory), "EDGEKIT_PROBE_TIMEOUT": str(timeout)}
