"""The per-step hot path for observations that need encoding: Discrete, MultiDiscrete, MultiBinary, Dict.

``ObservationEncoder`` turns any observation (or batch) into flat features with
numpy, which costs 8-30 us per call on x86 for these small spaces, far more
than the model. This step takes *one* observation as the env returns it and
writes the int8 input directly with Python scalars:

* a Box part goes through ``q = round(x * a + b)`` saturated, as ``step.py`` does;
* a one-hot or 0/1 feature is 0 or 1, so its level is one of two precomputed
  ints: ``round(b)`` (the level of 0) or ``round(a + b)`` (the level of 1) -
  what quantizing the encoded features gives, exactly (``0 * a + b == b``).

Anything that is not plainly one observation of the space (a batch, a list
from JSON, a value outside the space, NaN) makes the step return ``None``
before invoking; the caller then takes the general path, which also words the
error. Numpy and the interpreter only.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit.core.observations import ObservationEncoder
from edgekit.core.quant import INT8_MAX, INT8_MIN
from edgekit.core.spaces import BOX, DISCRETE, MULTI_BINARY, MULTI_DISCRETE
from edgekit.runtime.held_tensors import HeldTensors

EncodedStepFn = Callable[[Any], "np.ndarray | None"]
_DICTS = (dict, OrderedDict)
_INTEGER_SCALARS = (int, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64)
Writer = Callable[[Any], bool]  # write one part's int8 levels; False: not plainly this part's value


def _level(x: float) -> int:
    return INT8_MAX if x >= INT8_MAX else (INT8_MIN if x <= INT8_MIN else round(x))


def make_encoded_step(held: HeldTensors, a: np.ndarray, b: np.ndarray, encoder: ObservationEncoder,
                      read: Callable[[], np.ndarray]) -> EncodedStepFn:
    """``step(observation) -> action | None`` for one observation of ``encoder``'s space (unsplit input)."""
    invoke = held.invoke
    target = memoryview(held.input).cast("B").cast("b")
    a_list, b_list = a.tolist(), b.tolist()
    zero = [_level(v) for v in b_list]  # the level of 0 / of 1, per feature
    one = [_level(x + y) for x, y in zip(a_list, b_list)]
    writers = [(key, _writer(space, part, target, a_list, b_list, zero, one))
               for key, space, part in encoder.layout()]
    if encoder.keys is None:
        write = writers[0][1]

        def step(observation: Any) -> np.ndarray | None:
            if not write(observation):
                return None
            invoke()
            return read()

        return step
    count = len(writers)

    def dict_step(observation: Any) -> np.ndarray | None:
        if type(observation) not in _DICTS or len(observation) != count:
            return None
        for key, write in writers:
            value = observation.get(key, None)
            if value is None or not write(value):
                return None
        invoke()
        return read()

    return dict_step


def _writer(space: Any, part: slice, target: memoryview, a: list[float], b: list[float], zero: list[int],
            one: list[int]) -> Writer:
    start, stop = part.start, part.stop
    ndarray, isfinite, float32 = np.ndarray, math.isfinite, np.dtype(np.float32)
    if space.kind == BOX:
        shape, flat = space.shape, len(space.shape) == 1
        index = range(start, stop)

        def box(value: Any) -> bool:
            if type(value) is not ndarray or value.shape != shape or value.dtype.kind not in "biuf":
                return False
            if value.dtype is not float32:  # SB3 and the general path compute on float32
                value = value.astype(float32)
            values = value.tolist() if flat else value.reshape(-1).tolist()
            if not isfinite(sum(values)):
                return False
            for i, v in zip(index, values):
                target[i] = _level(v * a[i] + b[i])
            return True

        return box
    base = memoryview(np.asarray(zero[start:stop], dtype=np.int8)).cast("B").cast("b")
    if space.kind == DISCRETE:
        n = int(space.n)

        def discrete(value: Any) -> bool:
            scalar = type(value) in _INTEGER_SCALARS or \
                type(value) is ndarray and value.shape == () and value.dtype.kind in "iu"
            if not scalar:
                return False
            k = int(value)
            if not 0 <= k < n:
                return False
            target[start:stop] = base
            target[start + k] = one[start + k]
            return True

        return discrete
    if space.kind == MULTI_DISCRETE:
        offsets = [start + int(o) for o in np.cumsum([0, *space.nvec[:-1]])]
        branches = list(zip(offsets, space.nvec))
        shape = space.shape

        def multi_discrete(value: Any) -> bool:
            if type(value) is not ndarray or value.shape != shape or value.dtype.kind not in "iu":
                return False
            picks = value.tolist()
            for k, (_offset, n) in zip(picks, branches):
                if not 0 <= k < n:
                    return False
            target[start:stop] = base
            for k, (offset, _n) in zip(picks, branches):
                target[offset + k] = one[offset + k]
            return True

        return multi_discrete
    if space.kind == MULTI_BINARY:
        shape, flat = space.shape, len(space.shape) == 1
        index = range(start, stop)

        def multi_binary(value: Any) -> bool:
            if type(value) is not ndarray or value.shape != shape or value.dtype.kind not in "biu":
                return False
            bits = value.tolist() if flat else value.reshape(-1).tolist()
            for bit in bits:
                if bit != 0 and bit != 1:
                    return False
            for i, bit in zip(index, bits):
                target[i] = one[i] if bit else zero[i]
            return True

        return multi_binary
    raise ValueError(f"no encoded step for {space.kind}")


__all__ = ["make_encoded_step"]
