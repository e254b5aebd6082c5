"""A bundle's model, opened so that nothing unchecked reaches the interpreter in this process.

The model's bytes are read once and hashed against the manifest; the
structure of the flatbuffer is checked (``tflite_guard``); a child process
opens the same file, checks it holds the same bytes, and runs it once
(``probe``); only then does this process open an interpreter, on the very
bytes that were hashed, so a file swapped on disk meanwhile changes nothing.
Numpy-free; the interpreter is the caller's ``Backend``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle.files import verify_file
from edgekit.bundle.manifest import Manifest
from edgekit.core.errors import BundleError, DeviceError
from edgekit.core.native_stderr import quiet_native_stderr
from edgekit.runtime.interpreters import Backend, DeviceRequest
from edgekit.runtime.libedgetpu import LibraryFile
from edgekit.runtime.probe import run_probe
from edgekit.runtime.tflite_guard import check_tflite_structure


@dataclass(frozen=True)
class ModelBytes:
    """One model file of a bundle, read and checked."""

    path: Path
    content: bytes
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def read_model(bundle_dir: Path, manifest: Manifest, name: str) -> ModelBytes:
    """The file's bytes, matching the manifest's sha256, with a sound TFLite structure."""
    path = verify_file(bundle_dir, manifest, name)  # the messages for a missing or altered file
    content = path.read_bytes()
    sha256 = manifest.files[name]
    if hashlib.sha256(content).hexdigest() != sha256:
        raise BundleError(f"bundle file {name} changed while it was being opened",
                          hint="copy the bundle again from the build machine, or rebuild it")
    check_tflite_structure(path, content)  # the interpreter trusts the flatbuffer; a bad one can crash it
    return ModelBytes(path=path, content=content, sha256=sha256)


def probe_or_raise(backend: Backend, model: ModelBytes, request: DeviceRequest,
                   library: LibraryFile | None = None) -> None:
    """Probe ``model`` in a child process (cached); its DeviceError or BundleError when it fails."""
    result = run_probe(backend, model.path, model.sha256, request, library)
    error = result.error()
    if error is not None:
        raise error


def open_interpreter(backend: Backend, model: ModelBytes, num_threads: int | None,
                     delegates: list[Any] | None = None) -> Any:
    """An interpreter with allocated tensors on ``model``'s checked bytes (probe it first)."""
    try:
        with quiet_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            interpreter = backend.interpreter(None, num_threads=num_threads, delegates=delegates,
                                              content=model.content)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        if delegates:
            raise DeviceError(f"the Edge TPU could not load {model.name}: {exc}") from None
        raise BundleError(f"{model.name} is not a valid TFLite model ({exc})") from None
    return interpreter


def open_cpu_model(bundle_dir: Path, manifest: Manifest, backend: Backend, num_threads: int | None,
                   probe: bool = True) -> Any:
    """An interpreter on the bundle's CPU int8 model (``probe=False``: it passed a probe already)."""
    model = read_model(bundle_dir, manifest, manifest.models["cpu"].file)
    if probe:
        probe_or_raise(backend, model, DeviceRequest("cpu"))
    return open_interpreter(backend, model, num_threads)
