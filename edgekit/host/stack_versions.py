"""Versions of the build host's stack, recorded in the manifest and the report (what built this bundle)."""

from __future__ import annotations

from importlib import metadata

from edgekit import __version__

_VERSIONED = ("stable-baselines3", "torch", "gymnasium", "onnx", "onnxruntime", "onnx2tf", "tensorflow",
              "ai-edge-litert", "numpy")


def stack_versions() -> dict[str, str]:
    """Versions of the build host's stack, for the manifest."""
    out = {"edgekit": __version__}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
