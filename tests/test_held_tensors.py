"""The one private interpreter access (edgekit.runtime.held_tensors) and the step chosen at load.

Should an interpreter release rename ``_interpreter.Invoke``, the first test fails for that interpreter
(loudly, here, rather than the runtime silently running slower on the device); the runtime itself warns
once and runs the public calls.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from edgekit.bundle import Manifest
from edgekit.runtime import EdgePolicy
from edgekit.runtime.held_tensors import PrivateInvokeMissing, hold_tensors, private_invoke
from edgekit.runtime.interpreters import BACKENDS, find_backend
from edgekit.runtime.policy import SlowPathWarning

BUNDLE = "ppo-pendulum"


def _installed() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


@pytest.mark.parametrize("name", _installed())
def test_every_installed_interpreter_has_the_private_invoke(built_bundle, name):
    backend = find_backend(name)
    interpreter = backend.interpreter(str(built_bundle(BUNDLE).bundle_dir / "model_int8.tflite"))
    interpreter.allocate_tensors()
    in_index = interpreter.get_input_details()[0]["index"]
    out_index = interpreter.get_output_details()[0]["index"]
    held = hold_tensors(interpreter, in_index, out_index)  # raises PrivateInvokeMissing if it was renamed
    outputs = set()
    for level in (-100, 0, 100):
        held.input[:] = level  # write through the view, invoke while holding it, read through the other view
        held.invoke()
        outputs.add(held.output.tobytes())
    assert len(outputs) > 1  # the views are the live tensors
    with pytest.raises(RuntimeError):
        interpreter.invoke()  # why the private call exists: the public one refuses held views


class _PublicOnly:
    """A stand-in interpreter with the public API only (as a release without ``_interpreter`` would be)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        if name == "_interpreter":
            raise AttributeError(name)
        return getattr(self._real, name)


def test_an_interpreter_without_it_is_refused_by_hold_tensors_and_warned_about(built_bundle):
    bundle = built_bundle(BUNDLE).bundle_dir
    manifest = Manifest.read(bundle)
    backend = find_backend()
    real = backend.interpreter(str(bundle / "model_int8.tflite"))
    real.allocate_tensors()
    public = _PublicOnly(real)
    with pytest.raises(PrivateInvokeMissing, match="_interpreter.Invoke"):
        private_invoke(public)
    with pytest.warns(SlowPathWarning, match="_interpreter.Invoke"):
        slow = EdgePolicy(bundle, manifest, manifest.models["cpu"], public, "cpu", backend)
    fast = EdgePolicy.load(bundle, device="cpu")
    assert not slow.fast_path and fast.fast_path
    with np.load(bundle / "calibration.npz") as data:
        obs = data["held_out"][:64]
    np.testing.assert_array_equal(np.stack([slow.predict(o) for o in obs]), np.stack([fast.predict(o) for o in obs]))
    np.testing.assert_array_equal(slow.predict(obs), fast.predict(obs))


def test_predict_is_one_method_whatever_the_step(built_bundle):
    """No per-instance rebinding: ``predict`` is the class's method on every policy."""
    for name in (BUNDLE, "dqn-cartpole", "td3-pendulum-split"):
        policy = EdgePolicy.load(built_bundle(name).bundle_dir, device="cpu")
        assert "predict" not in vars(policy) and type(policy).predict is EdgePolicy.predict
        assert policy.predict.__func__ is EdgePolicy.predict  # type: ignore[attr-defined]


def test_json_lists_take_the_same_step_as_arrays(built_bundle):
    """A flat list of floats (what the server parses) is rounded to float32 as numpy does, then quantized
    by the scalar step: the same action as the array, and as the general path, bit for bit."""
    policy = EdgePolicy.load(built_bundle(BUNDLE).bundle_dir, device="cpu")
    rng = np.random.default_rng(5)
    rows = np.concatenate([rng.normal(0, 3, (300, 3)), rng.normal(0, 1e3, (50, 3))]).tolist()
    rows += [[1, 0, 2], [2**24, -2**24, 0], [True, 0.0, 1.0], [1e-320, 0.0, 0.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in rows:
            np.testing.assert_array_equal(policy.predict(row), policy._predict_general(row))
            np.testing.assert_array_equal(policy.predict(row), policy.predict(np.asarray(row, dtype=np.float32)))


def _boundary_values(a: float, b: float, zero: int) -> list[float]:
    """float64 values x whose int8 input level (x * a + b, rounded) differs from that of float32(x): just
    across a level boundary from the float32 value nearest to it."""
    out = []
    for k in range(-20, 20):
        x_star = (zero + k + 0.5 - b) / a  # exactly on the boundary between two levels
        d = x_star - float(np.float32(x_star))
        if d == 0:
            continue
        x64 = x_star + d * 0.01  # the far side of the boundary from its float32 rounding
        if float(np.float32(x64)) == float(np.float32(x_star)):
            out.append(x64)
    return out


@pytest.mark.parametrize("name", [BUNDLE, "ppo-dict-multidiscrete"])
def test_float64_observations_are_computed_as_float32_on_every_route(built_bundle, name):
    """SB3 and the general path compute on float32; a float64 ndarray must not reach the fast steps
    unrounded. The values sit where float32 rounding changes an int8 input level."""
    policy = EdgePolicy.load(built_bundle(name).bundle_dir, device="cpu")
    base = policy.observations_of(np.zeros((1, policy.encoder.features), dtype=np.float32))
    if policy.encoder.keys is None:
        key, part, template = None, slice(0, policy.encoder.features), base[0].astype(np.float64)
    else:
        key, _space, part = next((k, s, p) for k, s, p in policy.encoder.layout() if s.kind == "box")
        template = base[key][0].astype(np.float64)
    tried = 0
    for j in range(part.stop - part.start):
        for x in _boundary_values(float(policy._a[part.start + j]), float(policy._b[part.start + j]),
                                  policy._zero):
            value = template.copy()
            value.reshape(-1)[j] = x
            observation = value if key is None else {**{k: v[0] for k, v in base.items()}, key: value}
            np.testing.assert_array_equal(policy.predict(observation), policy._predict_general(observation))
            tried += 1
    assert tried > 10
