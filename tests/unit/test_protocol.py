"""The JSON-lines server's framing and replies on a committed bundle, in process (no server started)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgekit.runtime import EdgePolicy
from edgekit.runtime.bad_obs import BadObsGuard
from edgekit.runtime.lines import TOO_LONG, LineFramer
from edgekit.runtime.protocol import MAX_BATCH, Responder, handle_line
from edgekit.runtime.serve import serve_stdio


@pytest.fixture(scope="module")
def pendulum(bundle_dir):
    return EdgePolicy.load(bundle_dir("ppo-pendulum"), device="cpu")


@pytest.fixture(scope="module")
def cartpole(bundle_dir):
    return EdgePolicy.load(bundle_dir("ppo-cartpole"), device="cpu")


def test_lines_split_across_reads_are_joined_and_only_newline_ends_one():
    framer = LineFramer(limit=16)
    assert framer.feed(b"[1, 2]\n") == [b"[1, 2]"]
    assert framer.feed(b"[3,") == [] and framer.pending == 3
    assert framer.feed(b" 4]\r\n{}\n[5") == [b"[3, 4]\r", b"{}"]
    assert framer.finish() == b"[5" and framer.pending == 0
    assert framer.finish() is None


def test_an_over_long_line_is_one_error_and_the_framing_resumes_after_it():
    framer = LineFramer(limit=4)
    assert framer.feed(b"12345") == [TOO_LONG]  # answered as soon as it crosses the limit
    assert framer.pending == 0
    assert framer.feed(b"6789\n[1]\n") == [b"[1]"]  # the rest of the long line is dropped, no second error
    assert framer.feed(b"abcdefgh\nxy\n") == [TOO_LONG, b"xy"]


def test_replies_carry_the_action_and_echo_the_id(pendulum):
    obs = [0.3, -0.9, 1.2]
    expected = pendulum.predict(obs).tolist()
    assert json.loads(handle_line(pendulum, json.dumps(obs))) == {"action": expected}
    assert json.loads(handle_line(pendulum, json.dumps({"id": 7, "obs": obs}))) == {"id": 7, "action": expected}
    assert json.loads(handle_line(pendulum, json.dumps({"id": "a", "obs": [obs, obs]}))) == \
        {"id": "a", "action": [expected, expected]}


def test_discrete_actions_are_json_integers(cartpole):
    reply = json.loads(handle_line(cartpole, b"[0.01, 0.2, -0.03, -0.3]"))
    assert type(reply["action"]) is int and reply["action"] == int(cartpole.predict([0.01, 0.2, -0.03, -0.3]))


@pytest.mark.parametrize("line", ["not json", "[1, 2]", "[NaN, 0, 0]", "[Infinity, 0, 0]", '{"id": 3}',
                                  "[1, 2, 3] x", '"abc"', "[" * 5000])
def test_a_bad_line_is_answered_with_an_error_and_the_loop_goes_on(pendulum, line):
    reply = json.loads(Responder(pendulum).reply(line))
    assert set(reply) <= {"error", "id"} and reply["error"]


def test_a_batch_larger_than_the_limit_is_refused(pendulum):
    reply = json.loads(handle_line(pendulum, json.dumps([[0.0, 1.0, 0.0]] * (MAX_BATCH + 1))))
    assert f"at most {MAX_BATCH}" in reply["error"]


def test_hold_answers_a_bad_line_with_the_last_good_action_and_counts_it(pendulum):
    guard = BadObsGuard.for_space(pendulum.manifest.action_space, "hold")
    responder = Responder(pendulum)
    good = json.loads(responder.reply("[0.3, -0.9, 1.2]", guard))["action"]
    held = json.loads(responder.reply("[NaN, 0, 0]", guard))
    assert held["action"] == good and held["substituted"] == "hold" and held["reason"]
    assert guard.bad == 1


def test_serve_stdio_answers_every_line_in_order(pendulum):
    observations = np.load(pendulum.bundle_dir / "calibration.npz")["held_out"][:20]
    lines = [json.dumps({"id": i, "obs": o.tolist()}) for i, o in enumerate(observations)]
    lines.insert(5, "garbage")
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    os.write(stdin_w, ("\n".join(lines) + "\n\n").encode())  # a blank line gets no reply
    os.close(stdin_w)
    try:
        answered = serve_stdio(pendulum, None, stdin_fd=stdin_r, stdout_fd=stdout_w)
    finally:
        os.close(stdin_r)
        os.close(stdout_w)
    with os.fdopen(stdout_r) as out:
        replies = [json.loads(line) for line in out.read().splitlines()]
    assert answered == len(lines) == len(replies)
    assert "error" in replies[5]
    good = replies[:5] + replies[6:]
    assert [r["id"] for r in good] == list(range(20))
    np.testing.assert_array_equal([r["action"] for r in good], pendulum.predict(observations))
