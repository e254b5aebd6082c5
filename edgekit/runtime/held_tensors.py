"""The one place edgekit reaches past a TFLite interpreter's public API (as pycoral marks its one).

The per-step hot path (``runtime.step``, ``encoded_step``, ``image_input``)
writes the int8 input and reads the int8 output through zero-copy numpy views
of the interpreter's tensors (``interpreter.tensor(i)()``, public), and invokes
the model while holding them. The public ``interpreter.invoke()`` refuses to
run while anyone holds such a view (a precaution against tensors being
re-allocated, which never happens to a bundle's static-shape model after
``allocate_tensors``), so the hot path calls the wrapper underneath it,
``interpreter._interpreter.Invoke``: the same C++ ``Invoke`` without the
reference-count check. ai_edge_litert, tflite_runtime and ``tf.lite`` all have
it today; should a release rename it, ``hold_tensors`` raises
``PrivateInvokeMissing`` (``EdgePolicy`` then warns once and runs the public,
slower path) and ``tests/test_held_tensors.py`` fails for every installed
interpreter, so the rename cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

PRIVATE_INVOKE = "_interpreter.Invoke"  # for messages


class PrivateInvokeMissing(RuntimeError):
    """The interpreter has no ``_interpreter.Invoke``: the held-view hot path cannot run on it."""


@dataclass(frozen=True)
class HeldTensors:
    """An interpreter's input and output tensors as flat int8 views, and the call that runs the model
    while the views are held. Valid as long as the interpreter lives (its tensors are never re-allocated)."""

    invoke: Callable[[], None]
    input: np.ndarray  # flat int8 view of input tensor 0: write the quantized observation here
    output: np.ndarray  # flat int8 view of output tensor 0: read the action's levels here


def private_invoke(interpreter: Any) -> Callable[[], None]:
    """``interpreter._interpreter.Invoke``, or ``PrivateInvokeMissing``."""
    wrapper = getattr(interpreter, "_interpreter", None)
    invoke = getattr(wrapper, "Invoke", None)
    if not callable(invoke):
        raise PrivateInvokeMissing(f"{type(interpreter).__module__}.{type(interpreter).__name__} has no "
                                   f"{PRIVATE_INVOKE}")
    return invoke


def hold_tensors(interpreter: Any, in_index: int, out_index: int) -> HeldTensors:
    """Take the views and the private invoke (after ``allocate_tensors``). From now on call
    ``HeldTensors.invoke``, never ``interpreter.invoke()`` (it would refuse)."""
    invoke = private_invoke(interpreter)  # first: without it, holding views would break invoke()
    return HeldTensors(invoke=invoke, input=interpreter.tensor(in_index)().reshape(-1),
                       output=interpreter.tensor(out_index)().reshape(-1))
