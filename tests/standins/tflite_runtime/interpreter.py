"""STAND-IN ``tflite_runtime.interpreter``: ai_edge_litert's, with an injected mid-run fault (see __init__)."""

import os

from ai_edge_litert import interpreter as _litert

load_delegate = _litert.load_delegate
OpResolverType = _litert.OpResolverType
FAULT = "stand-in: the Edge TPU stopped answering (injected fault: EDGEKIT_STANDIN_FAIL_AFTER)"


class _FailingWrapper:
    """The interpreter's native wrapper, whose Invoke fails after ``remaining`` calls."""

    def __init__(self, real, remaining):
        self._real = real
        self._remaining = remaining

    def Invoke(self, *args):  # noqa: N802 (the wrapper's name)
        if self._remaining <= 0:
            raise RuntimeError(FAULT)
        self._remaining -= 1
        return self._real.Invoke(*args)

    def __getattr__(self, name):
        return getattr(self._real, name)


class Interpreter(_litert.Interpreter):
    def __init__(self, *args, experimental_delegates=None, **kwargs):
        super().__init__(*args, experimental_delegates=experimental_delegates, **kwargs)
        after = os.environ.get("EDGEKIT_STANDIN_FAIL_AFTER")
        failing = experimental_delegates or os.environ.get("EDGEKIT_STANDIN_FAIL_CPU") == "1"
        if failing and after is not None:
            self._interpreter = _FailingWrapper(self._interpreter, int(after))

    def tensor(self, tensor_index):
        real = getattr(self._interpreter, "_real", self._interpreter)  # the views' base is the native wrapper
        return lambda: real.tensor(real, tensor_index)
