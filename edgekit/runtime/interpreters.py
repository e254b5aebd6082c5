"""Find a TFLite interpreter and open the Edge TPU delegate.

The chain is ``ai_edge_litert`` (current), ``tflite_runtime`` (its
predecessor, the one that runs on Raspberry Pi OS with Python 3.11 today),
then ``tensorflow.lite`` (a workstation that has TensorFlow anyway). pycoral
is never needed: the Edge TPU delegate is libedgetpu loaded through the
interpreter package's own ``load_delegate``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgekit.core.errors import DeviceError, MissingDependencyError, UsageError
from edgekit.runtime.libedgetpu import EDGETPU_LIBRARY, LibraryFile, edgetpu_library_name

__all__ = ["BACKENDS", "EDGETPU_LIBRARY", "Backend", "DeviceRequest", "edgetpu_library_name", "find_backend",
           "load_edgetpu_delegate"]

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")


_DEVICE_RE = re.compile(r"^(auto|cpu|usb|pci)(?::(\d{1,3}))?$")


@dataclass(frozen=True)
class Backend:
    """One importable TFLite interpreter package."""

    name: str
    version: str
    interpreter_class: type
    load_delegate: Callable[..., Any]
    op_resolver_type: Any  # enum for BUILTIN_WITHOUT_DEFAULT_DELEGATES, or None

    def interpreter(self, model_path: str | None, num_threads: int | None = 1,
                    delegates: list[Any] | None = None, plain: bool = False, content: bytes | None = None) -> Any:
        """An interpreter on ``model_path``, or on the model's bytes (``content``); ``plain`` skips default
        delegates (XNNPACK)."""
        kwargs: dict[str, Any] = {"num_threads": num_threads}
        if content is not None:
            kwargs["model_content"] = content
        else:
            kwargs["model_path"] = model_path
        if delegates:
            kwargs["experimental_delegates"] = delegates
        if plain and self.op_resolver_type is not None:
            kwargs["experimental_op_resolver_type"] = self.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        return self.interpreter_class(**kwargs)


def find_backend(preferred: str | None = None) -> Backend:
    """The first interpreter package that imports, or ``preferred`` alone."""
    names = (preferred,) if preferred else BACKENDS
    if preferred and preferred not in BACKENDS:
        raise UsageError(f"unknown interpreter {preferred!r}; choose one of {', '.join(BACKENDS)}")
    for name in names:
        backend = _try_import(name)
        if backend is not None:
            return backend
    raise MissingDependencyError(
        "no TensorFlow Lite interpreter is installed",
        hint="pip install ai-edge-litert (on a Raspberry Pi with Python <= 3.11: pip install tflite-runtime 'numpy<2')",
    )


def _try_import(name: str) -> Backend | None:
    try:
        if name == "tensorflow":
            import os

            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            tf = importlib.import_module("tensorflow")
            module: Any = tf.lite
            load_delegate = tf.lite.experimental.load_delegate
            resolver = tf.lite.experimental.OpResolverType
            version = tf.__version__
        else:
            module = importlib.import_module(f"{name}.interpreter")
            load_delegate = module.load_delegate
            resolver = getattr(module, "OpResolverType", None)
            version = _package_version(name)
    except ImportError:
        return None
    return Backend(
        name=name,
        version=version,
        interpreter_class=module.Interpreter,
        load_delegate=load_delegate,
        op_resolver_type=resolver,
    )


def _package_version(name: str) -> str:
    from importlib import metadata

    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(name, name)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed ``--device``: ``auto``, ``cpu``, ``usb[:N]`` or ``pci[:N]``."""

    kind: str
    index: int | None = None

    @classmethod
    def parse(cls, text: str) -> DeviceRequest:
        match = _DEVICE_RE.match(text.strip().lower())
        if not match or (match.group(1) in ("auto", "cpu") and match.group(2) is not None):
            raise UsageError(f"unknown device {text!r}", hint="use auto, cpu, usb, usb:N, pci or pci:N")
        index = int(match.group(2)) if match.group(2) is not None else None
        return cls(kind=match.group(1), index=index)

    @property
    def wants_tpu(self) -> bool:
        return self.kind in ("usb", "pci", "auto")

    @property
    def delegate_device(self) -> str | None:
        """The libedgetpu ``device`` option: ``usb``, ``usb:0``, ... or None for any."""
        if self.kind in ("usb", "pci"):
            return self.kind if self.index is None else f"{self.kind}:{self.index}"
        return None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def load_edgetpu_delegate(backend: Backend, request: DeviceRequest, library: LibraryFile) -> Any:
    """Open libedgetpu's delegate for ``request`` in this process; raises DeviceError when it cannot.

    Call it only after a probe of the same library, interpreter and device passed (``runtime.probe``):
    a mismatched libedgetpu crashes the process that loads it.
    """
    options = {"device": request.delegate_device} if request.delegate_device else {}
    try:
        return backend.load_delegate(library.path, options)
    except (ValueError, OSError, RuntimeError) as exc:
        raise DeviceError(
            f"cannot open the Edge TPU ({request}) through {library.path}: {' '.join(str(exc).split())}",
            hint="plug the accelerator in (see `edgekit doctor`), or use --device cpu",
        ) from None
