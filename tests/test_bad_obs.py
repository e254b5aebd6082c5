"""Bad observations at run time: errors by default, hold/zero substitutes on request, counted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, run_cli

from edgekit.core.errors import UsageError
from edgekit.core.spaces import BOX, DISCRETE, SpaceSpec
from edgekit.runtime import EdgePolicy
from edgekit.runtime.bad_obs import BadObsGuard, neutral_action
from edgekit.runtime.serve import handle_line

INF = float("inf")


@pytest.mark.parametrize(("low", "high", "neutral"), [
    ((-2.0,), (2.0,), [0.0]),  # Pendulum: zero torque
    ((0.0, -1.0), (1.0, 3.0), [0.5, 1.0]),  # the centre, not zero
    ((-INF, 1.0), (INF, 5.0), [0.0, 3.0]),  # unbounded: 0, clipped into the bounds
    ((1.0,), (INF,), [1.0]),
])
def test_neutral_box_action_is_the_centre(low, high, neutral):
    space = SpaceSpec(kind=BOX, shape=(len(low),), dtype="float32", low=low, high=high)
    assert neutral_action(space) == neutral


def test_neutral_discrete_action_is_the_first():
    assert neutral_action(SpaceSpec(kind=DISCRETE, shape=(), dtype="int64", n=3, start=0)) == 0


def test_unknown_mode_is_a_usage_error():
    with pytest.raises(UsageError):
        BadObsGuard.for_space(SpaceSpec(kind=DISCRETE, shape=(), dtype="int64", n=3, start=0), "panic")


@pytest.fixture(scope="module")
def policy(built_bundle):
    return EdgePolicy.load(built_bundle("ppo-pendulum").bundle_dir, device="cpu")


def _ask(policy, line, guard):
    return json.loads(handle_line(policy, line, guard))


def test_hold_answers_the_last_good_action(policy):
    guard = BadObsGuard.for_space(policy.manifest.action_space, "hold")
    first = _ask(policy, '{"id": 1, "obs": "nope"}', guard)
    assert first == {"id": 1, "action": [0.0], "substituted": "hold", "reason": first["reason"]}  # none yet
    good = _ask(policy, "[0.5, 0.5, 1.0]", guard)["action"]
    assert good == policy.predict([0.5, 0.5, 1.0]).tolist()
    for bad in ("[NaN, 0, 0]", "[1, 2]", "not json", '{"id": 3}'):
        reply = _ask(policy, bad, guard)
        assert reply["action"] == good and reply["substituted"] == "hold" and "error" not in reply, bad
    assert guard.bad == 5
    guard.forget()  # a new TCP client
    assert _ask(policy, "[1, 2]", guard)["action"] == [0.0]


def test_zero_answers_the_neutral_action(policy):
    guard = BadObsGuard.for_space(policy.manifest.action_space, "zero")
    _ask(policy, "[0.5, 0.5, 1.0]", guard)
    assert _ask(policy, "[1, 2]", guard)["action"] == [0.0]
    assert _ask(policy, "[1, 2]", guard)["substituted"] == "zero" and guard.bad == 2


def test_error_mode_counts_and_answers_errors(policy):
    guard = BadObsGuard.for_space(policy.manifest.action_space, "error")
    assert set(_ask(policy, "[1, 2]", guard)) == {"error"} and guard.bad == 1
    assert set(json.loads(handle_line(policy, "[1, 2]"))) == {"error"}  # no guard: as before


def test_saturation_is_counted_only_when_asked(policy):
    inside = [0.0, 0.0, 0.0]
    far = [1e3, 0.0, -1e3]
    assert policy.saturated_features(inside) == 0 and policy.saturated_features(far) == 2
    guard = BadObsGuard.for_space(policy.manifest.action_space, "error", count_saturation=True)
    assert "saturated" not in _ask(policy, json.dumps(inside), guard)
    assert _ask(policy, json.dumps(far), guard)["saturated"] == 2
    assert guard.saturated == 1
    quiet = BadObsGuard.for_space(policy.manifest.action_space, "error")
    assert "saturated" not in _ask(policy, json.dumps(far), quiet)


def test_cli_hold_prints_the_count_and_survives_non_utf8(built_bundle):
    bundle = str(built_bundle("ppo-pendulum").bundle_dir)
    lines = b"[0.5, 0.5, 1.0]\n\xff\xfe[1]\n[1, 2]\n[1000, 0, 0]\n"
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", bundle, "--serve", "stdio", "--device", "cpu",
                           "--on-bad-obs", "hold", "--count-saturation"],
                          input=lines, capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [r.get("substituted") for r in replies] == [None, "hold", "hold", None]
    assert replies[1]["action"] == replies[0]["action"] == replies[2]["action"]
    assert replies[3]["saturated"] == 1
    stderr = proc.stderr.decode()
    assert "answered 4 requests; 2 bad observations (answered with the hold action), 1 outside the int8" in stderr


def test_cli_bad_obs_options_need_serve(built_bundle):
    proc = run_cli("run", str(built_bundle("ppo-pendulum").bundle_dir), "--device", "cpu", "--on-bad-obs", "hold")
    assert proc.returncode != 0 and "apply to --serve only" in proc.stderr and "Traceback" not in proc.stderr
