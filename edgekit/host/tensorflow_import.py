"""Import TensorFlow quietly and only when a stage needs it (it costs seconds)."""

from __future__ import annotations

import os
from types import ModuleType

from edgekit.core.errors import MissingDependencyError
from edgekit.core.native_stderr import quiet_native_stderr


def import_tensorflow() -> ModuleType:
    """``import tensorflow`` with its C++ and Python logging turned down."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    try:
        with quiet_native_stderr():
            import tensorflow as tf
    except ImportError:
        raise MissingDependencyError(
            "tensorflow is not installed (needed to build int8 models)", hint="pip install 'edgekit-sb3[host]'"
        ) from None
    tf.get_logger().setLevel("ERROR")
    return tf
