"""The per-step hot path: one observation in, one action out, with as little Python as possible.

A robot's control loop calls ``predict`` once per step on a single observation.
The model itself takes a microsecond or two, so the overhead around it matters:

* input and output tensors are accessed through persistent zero-copy views,
  invoked while held (``runtime.held_tensors``, the one private interpreter
  access, says why that is safe);
* the int8 output has 256 levels per element, so dequantize + post-process is a
  lookup table filled by the same ``PostProcessor`` the batch path uses
  (identical results by construction) wherever each action value depends on one
  output (clip, unscale, threshold); an argmax (per branch for MultiDiscrete)
  runs on the int8 levels, which dequantization orders the same way (first
  index on ties, as numpy);
* small observations are quantized with Python scalars (numpy's per-call overhead
  exceeds the arithmetic for a handful of values), larger ones with numpy;
* the step is a closure over local variables: attribute lookups and method
  calls cost as much as the arithmetic here;
* the scalar steps also take the observation as a list of Python floats
  (``Step.values``): a JSON-lines server has one, and numpy would cost more
  than the step to make an array of it.

Both compute ``q = round(obs * a + b)`` saturated to int8 in float64, exactly as
``EdgePolicy.quantize`` does for the batch path.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.core.errors import InputError
from edgekit.core.postprocess import MULTI_ARGMAX, PostProcessor
from edgekit.core.quant import INT8_MAX, INT8_MIN, split_quantize
from edgekit.runtime.held_tensors import HeldTensors

SCALAR_LIMIT = 32  # features (and outputs) up to which Python scalars beat numpy
NOT_FINITE = "observation contains NaN or infinity"
EXACT_INT = 1 << 24  # integers up to this size are exact in float32, so any route converts them alike

StepFn = Callable[[np.ndarray], np.ndarray]
ValuesFn = Callable[[list], np.ndarray]


@dataclass(frozen=True)
class Step:
    """One observation in, one action out. ``array`` takes an ndarray of the observation's shape;
    ``values`` (scalar steps only, else None) the same observation flattened to Python floats that are
    already float32 values (``float32_values``)."""

    array: StepFn
    values: ValuesFn | None = None


def float32_values(observation: list) -> list | None:
    """A flat JSON-style list of numbers as float32-rounded Python floats, as numpy would cast it, or None
    when anything in it is not plainly a float or a small int (the general path then checks and words it)."""
    for v in observation:
        kind = type(v)
        if kind is not float and (kind is not int or not -EXACT_INT <= v <= EXACT_INT):
            return None
    return array("f", observation).tolist()


def int8_levels() -> np.ndarray:
    """The 256 int8 values, ordered so that index i holds the value whose byte is i.

    Indexing a table with an int8 array then needs no offset: numpy reads a
    negative index -k as 256 - k, the byte of -k.
    """
    levels = np.arange(256, dtype=np.int64)
    return np.where(levels < 128, levels, levels - 256).astype(np.int8)


def lookup_table(post: PostProcessor, dequantize: Callable[[np.ndarray], np.ndarray], width: int) -> np.ndarray:
    """(width, 256) float32: the post-processed value of every int8 level, per output."""
    levels = np.repeat(int8_levels()[:, None], width, axis=1)
    return np.ascontiguousarray(post(dequantize(levels)).reshape(256, width).T)


def make_step(held: HeldTensors, a: np.ndarray, b: np.ndarray, post: PostProcessor,
              dequantize: Callable[[np.ndarray], np.ndarray], action_shape: tuple[int, ...],
              split: int = 0, zero_point: int = 0, clamp: tuple[np.ndarray, np.ndarray] | None = None) -> Step:
    """Build the step for one observation of a Box (of any shape; its features are the observation).

    With ``split`` the input holds a coarse and a fine part per feature (see
    ``edgekit.bundle.manifest.Preprocess``), computed as ``quant.split_quantize`` does.
    ``clamp``: per-feature (low, high) applied to the raw observation first (VecNormalize's clip).
    """
    invoke, in_view, out_view = held.invoke, held.input, held.output
    bounds = None if clamp is None else (clamp[0].tolist(), clamp[1].tolist())
    small = a.size <= SCALAR_LIMIT
    if small and (split or out_view.size <= SCALAR_LIMIT):  # Python scalars in, output_reader out
        read = output_reader(out_view, post, dequantize, action_shape)
        if split:
            values = _scalar_split_step(invoke, in_view, a, b, read, split, zero_point, bounds)
        else:
            values = _scalar_step(invoke, in_view, a, b, read, bounds)
        return Step(array=lambda observation: values(observation.reshape(-1).tolist()), values=values)
    table = lookup_table(post, dequantize, out_view.size) if post.elementwise else None
    pick = branch_picker(out_view, post.branches) if post.kind == MULTI_ARGMAX else None
    if split:
        return Step(_split_step(invoke, in_view, out_view, a, b, table, post.start, action_shape, split,
                                zero_point, bounds, pick))
    step = _vector_step(invoke, in_view, out_view, a, b, table, post.start, action_shape, pick)
    return Step(step if clamp is None else _clamped(step, clamp[0], clamp[1]))


def branch_picker(out_view: np.ndarray, branches: list[tuple[int, int]]) -> Callable[[], np.ndarray]:
    """Per-branch argmax of the int8 outputs (MultiDiscrete), as int64 like SB3's actions."""
    source = memoryview(out_view).cast("B").cast("b")
    ranges = [(range(lo, hi), lo) for lo, hi in branches]
    array, int64, get = np.array, np.int64, source.__getitem__

    def pick() -> np.ndarray:
        return array([max(r, key=get) - lo for r, lo in ranges], dtype=int64)

    return pick


def output_reader(out_view: np.ndarray, post: PostProcessor, dequantize: Callable[[np.ndarray], np.ndarray],
                  action_shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """``read() -> action`` from the int8 output view, as the scalar step post-processes it."""
    source = memoryview(out_view).cast("B").cast("b")
    width, start = out_view.size, post.start
    array, float32, int64 = np.array, np.float32, np.int64
    if post.kind == MULTI_ARGMAX:
        return branch_picker(out_view, post.branches)
    if not post.elementwise:
        outputs, get = range(width), source.__getitem__
        return lambda: array(max(outputs, key=get) + start, dtype=int64)
    table = lookup_table(post, dequantize, width)
    if width == 1:  # one output (e.g. a 1-D Box): every action is one of 256 prebuilt arrays; hand out a copy
        prebuilt = [v.reshape(action_shape) for v in table[0].reshape(-1, 1)]
        return lambda: prebuilt[source[0]].copy()
    rows = [row.tolist() for row in table]
    flat_out = len(action_shape) == 1
    outputs = range(width)

    def read() -> np.ndarray:
        action = array([rows[k][source[k]] for k in outputs], dtype=float32)
        return action if flat_out else action.reshape(action_shape)

    return read


def _clamp_values(values: list[float], bounds: tuple[list[float], list[float]]) -> list[float]:
    """Per-feature clamp of a short list of finite values (VecNormalize's clip, in raw units)."""
    return [lo if v < lo else (hi if v > hi else v) for v, lo, hi in zip(values, bounds[0], bounds[1])]


def _clamped(step: StepFn, low: np.ndarray, high: np.ndarray) -> StepFn:
    """Clamp each feature to [low, high] before ``step`` (NaN and infinities still reach its check)."""

    def clamped(observation: np.ndarray) -> np.ndarray:
        inside = np.minimum(np.maximum(observation.reshape(-1), low), high)
        if not np.isfinite(observation).all():  # the clamp turns an infinity into a bound: keep it visible
            raise InputError(NOT_FINITE)
        return step(inside)

    return clamped


def _scalar_step(invoke: Callable[[], None], in_view: np.ndarray, a: np.ndarray, b: np.ndarray,
                 read: Callable[[], np.ndarray], bounds: tuple[list[float], list[float]] | None = None) -> ValuesFn:
    """Python scalars in (one flat observation's float32 values), ``read`` (``output_reader``) out: small
    models."""
    target = memoryview(in_view).cast("B").cast("b")
    a_list, b_list = a.tolist(), b.tolist()
    isfinite = math.isfinite
    hi, lo = INT8_MAX, INT8_MIN

    def step(values: list) -> np.ndarray:
        if not isfinite(sum(values)):  # NaN or inf anywhere (float32 values cannot overflow the sum)
            raise InputError(NOT_FINITE)
        if bounds is not None:
            values = _clamp_values(values, bounds)
        i = 0
        for v in values:  # an explicit index is faster here than enumerate/zip
            x = v * a_list[i] + b_list[i]
            target[i] = hi if x >= hi else (lo if x <= lo else round(x))
            i += 1  # noqa: SIM113
        invoke()
        return read()

    return step


def _vector_step(invoke: Callable[[], None], in_view: np.ndarray, out_view: np.ndarray, a: np.ndarray,
                 b: np.ndarray, table: np.ndarray | None, start: int, action_shape: tuple[int, ...],
                 pick: Callable[[], np.ndarray] | None = None) -> StepFn:
    buf = np.empty(a.size, dtype=np.float64)
    zeros = np.zeros(a.size, dtype=np.float64)
    columns = np.arange(out_view.size)
    multiply, add, clip, rint = np.multiply, np.add, np.clip, np.rint

    def step(observation: np.ndarray) -> np.ndarray:
        multiply(observation.reshape(-1), a, out=buf)
        add(buf, b, out=buf)
        if buf.dot(zeros) != 0.0:  # finite values give exactly 0; NaN or inf give NaN
            raise InputError(NOT_FINITE)
        clip(buf, INT8_MIN, INT8_MAX, out=buf)
        rint(buf, out=in_view, casting="unsafe")
        invoke()
        if table is None:
            return pick() if pick is not None else np.array(int(out_view.argmax()) + start, dtype=np.int64)
        return table[columns, out_view].reshape(action_shape)

    return step


def _split_step(invoke: Callable[[], None], in_view: np.ndarray, out_view: np.ndarray, a: np.ndarray,
                b: np.ndarray, table: np.ndarray | None, start: int, action_shape: tuple[int, ...], split: int,
                zero_point: int, bounds: tuple[list[float], list[float]] | None = None,
                pick: Callable[[], np.ndarray] | None = None) -> StepFn:
    """Coarse + fine input parts per feature, with numpy (``_scalar_split_step`` for small inputs)."""
    low = None if bounds is None else np.asarray(bounds[0])
    high = None if bounds is None else np.asarray(bounds[1])
    columns = np.arange(out_view.size)

    def step(observation: np.ndarray) -> np.ndarray:
        x = observation.reshape(-1).astype(np.float64)
        if not np.isfinite(x).all():
            raise InputError(NOT_FINITE)
        if low is not None:
            x = np.clip(x, low, high)
        in_view[:] = split_quantize(x * a + b, zero_point, split)
        invoke()
        if table is None:
            return pick() if pick is not None else np.array(int(out_view.argmax()) + start, dtype=np.int64)
        return table[columns, out_view].reshape(action_shape)

    return step


def _scalar_split_step(invoke: Callable[[], None], in_view: np.ndarray, a: np.ndarray, b: np.ndarray,
                       read: Callable[[], np.ndarray], split: int, zero_point: int,
                       bounds: tuple[list[float], list[float]] | None) -> ValuesFn:
    """The split input with Python scalars (one flat observation's float32 values), ``read``
    (``output_reader``) out: small models."""
    n = a.size
    target = memoryview(in_view).cast("B").cast("b")
    a_list, b_list = a.tolist(), b.tolist()
    lo_c, hi_c = INT8_MIN - zero_point, INT8_MAX - zero_point
    isfinite = math.isfinite
    half = round(split * 0.5)  # the fine part of a saturated coarse part: the residual clipped to +-0.5

    def step(values: list) -> np.ndarray:
        if not isfinite(sum(values)):
            raise InputError(NOT_FINITE)
        if bounds is not None:
            values = _clamp_values(values, bounds)
        i = 0
        for v in values:  # as quant.split_quantize, one feature at a time
            u = v * a_list[i] + b_list[i] - zero_point
            c = round(u)
            if lo_c <= c <= hi_c:  # |u - c| <= 0.5: the fine part needs no clip
                target[i] = c + zero_point
                f = round(split * (u - c)) + zero_point
            elif c > hi_c:
                target[i] = INT8_MAX
                f = half + zero_point
            else:
                target[i] = INT8_MIN
                f = -half + zero_point
            target[n + i] = INT8_MAX if f > INT8_MAX else (INT8_MIN if f < INT8_MIN else f)
            i += 1  # noqa: SIM113
        invoke()
        return read()

    return step
