"""The Edge TPU side of the build host: a static compatibility check and the compiler.

``check`` predicts from the .tflite file alone how Google's ``edgetpu_compiler``
will map a model, so a machine without the compiler (ARM, macOS, CI) still
learns what would stay on the CPU. ``compiler``, ``log`` and
``bundle_compile`` run the real compiler when it is installed and record what
it did in the bundle. Submodules import what they need when used.
"""

from __future__ import annotations


class EdgeTPUMappingWarning(UserWarning):
    """The model compiled, but some operations will run on the CPU instead of the Edge TPU."""


__all__ = ["EdgeTPUMappingWarning"]
