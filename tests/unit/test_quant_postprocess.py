"""int8 quantization maths and SB3's post-processing, on their own (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.postprocess import (
    ARGMAX,
    CLIP,
    MULTI_ARGMAX,
    THRESHOLD,
    UNSCALE,
    PostProcessor,
    branches,
    expected_kinds,
    postprocess_problem,
)
from edgekit.core.quant import INT8_MAX, INT8_MIN, QuantParams, split_quantize
from edgekit.core.spaces import SpaceSpec

BOX = SpaceSpec("box", (2,), "float32", low=(-2.0, 0.0), high=(2.0, 1.0))


def test_quantize_rounds_half_to_even_and_saturates():
    q = QuantParams(scale=0.5, zero_point=3)
    values = np.array([0.0, 0.25, 0.75, -0.25, 1e9, -1e9, 62.0, -65.5])
    # 0.25 / 0.5 = 0.5 -> 0 (even), 0.75 / 0.5 = 1.5 -> 2; then + zero point; beyond the range: saturated
    np.testing.assert_array_equal(q.quantize(values), [3, 3, 5, 3, INT8_MAX, INT8_MIN, 127, -128])
    assert q.quantize(values).dtype == np.int8


def test_dequantize_inverts_quantize_within_half_a_step_over_the_representable_range():
    q = QuantParams(scale=0.0123, zero_point=-7)
    low, high = q.representable
    assert (low, high) == pytest.approx((0.0123 * -121, 0.0123 * 134))
    x = np.linspace(low, high, 5001, dtype=np.float32)
    back = q.dequantize(q.quantize(x))
    assert back.dtype == np.float32
    assert np.abs(back - x).max() <= 0.5 * q.scale * (1 + 1e-5)
    levels = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int8)
    np.testing.assert_array_equal(q.quantize(q.dequantize(levels)), levels)  # every level is a fixed point


@pytest.mark.parametrize(("raw", "needle"), [
    ({"scale": 0.0, "zero_point": 0}, "scale"), ({"scale": -1.0, "zero_point": 0}, "scale"),
    ({"scale": True, "zero_point": 0}, "scale"), ({"scale": 1e-45, "zero_point": 0}, "scale"),
    ({"scale": 0.1, "zero_point": 128}, "zero_point"), ({"scale": 0.1, "zero_point": 1.0}, "zero_point"),
    ({"scale": 0.1, "zero_point": False}, "zero_point"), ([0.1, 0], "object"),
])
def test_quant_params_from_hostile_json_are_refused(raw, needle):
    with pytest.raises(ValueError, match=needle) as caught:
        QuantParams.from_dict(raw, "models.cpu.input")
    assert "models.cpu.input" in str(caught.value)


def test_quant_params_round_trip():
    q = QuantParams(scale=0.02, zero_point=-128)
    assert QuantParams.from_dict(q.to_dict(), "x") == q


def test_split_input_reconstructs_levels_to_a_fraction_of_a_step():
    split, zero = 16, 5
    u = np.linspace(-100.0, 100.0, 2001).reshape(-1, 1)
    parts = split_quantize(u + zero, zero, split)
    assert parts.dtype == np.int8 and parts.shape == (2001, 2)
    coarse, fine = parts[:, :1].astype(np.float64) - zero, parts[:, 1:].astype(np.float64) - zero
    np.testing.assert_allclose(coarse + fine / split, u, atol=0.5 / split + 1e-9)


def test_clip_and_unscale_are_sb3s():
    outputs = np.array([[-3.0, 0.5], [0.0, 2.0], [1.5, -0.2]], dtype=np.float32)
    np.testing.assert_array_equal(PostProcessor(CLIP, BOX)(outputs), [[-2.0, 0.5], [0.0, 1.0], [1.5, 0.0]])
    unscaled = PostProcessor(UNSCALE, BOX)(outputs)  # low + (clip(a, -1, 1) + 1) / 2 * (high - low)
    np.testing.assert_allclose(unscaled, [[-2.0, 0.75], [0.0, 1.0], [2.0, 0.4]], rtol=1e-6)
    assert unscaled.dtype == np.float32 and unscaled.shape == (3, 2)
    assert PostProcessor(UNSCALE, BOX).one(np.array([1.0, -1.0])).tolist() == [2.0, 0.0]


def test_argmax_takes_the_first_of_ties_and_adds_the_discrete_start():
    space = SpaceSpec("discrete", (), "int64", n=3, start=-1)
    actions = PostProcessor(ARGMAX, space)(np.array([[0.1, 0.9, 0.9], [2.0, 2.0, 1.0], [0.0, 0.0, 5.0]]))
    assert actions.dtype == np.int64 and actions.tolist() == [0, -1, 1]
    assert PostProcessor(ARGMAX, space).one(np.array([0.0, 1.0, 0.0])).shape == ()


def test_multi_argmax_is_the_per_branch_mode():
    space = SpaceSpec("multi_discrete", (3,), "int64", nvec=(2, 3, 1))
    assert branches(space) == [(0, 2), (2, 5), (5, 6)]
    outputs = np.array([[0.0, 1.0, 5.0, 5.0, 4.0, -9.0], [3.0, 1.0, 0.0, 0.0, 7.0, 2.0]])
    actions = PostProcessor(MULTI_ARGMAX, space)(outputs)
    assert actions.dtype == np.int64 and actions.tolist() == [[1, 0, 0], [0, 2, 0]]


def test_threshold_is_the_bernoulli_mode_with_the_tie_at_zero_giving_zero():
    space = SpaceSpec("multi_binary", (4,), "int8")
    actions = PostProcessor(THRESHOLD, space)(np.array([[-1.0, 0.0, 1e-6, 3.0]], dtype=np.float32))
    assert actions.dtype == np.float32 and actions.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_post_processing_that_cannot_give_the_actions_is_refused():
    discrete = SpaceSpec("discrete", (), "int64", n=2)
    assert expected_kinds(discrete) == (ARGMAX,) and expected_kinds(BOX) == (CLIP, UNSCALE)
    assert "does not fit" in postprocess_problem(CLIP, discrete)
    unbounded = SpaceSpec("box", (1,), "float32", low=(-np.inf,), high=(np.inf,))
    assert "infinite bounds" in postprocess_problem(UNSCALE, unbounded)
    assert postprocess_problem(CLIP, unbounded) is None  # clipping to infinite bounds is the identity
    with pytest.raises(ValueError, match="infinite"):
        PostProcessor(UNSCALE, unbounded)
