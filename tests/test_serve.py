"""The control-loop servers driven by real client processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from conftest import REPO

from edgekit.runtime import EdgePolicy


def _popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekit", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, bufsize=1)


def test_stdio_answers_each_line_as_it_comes(built_bundle):
    built = built_bundle("ppo-pendulum")
    policy = EdgePolicy.load(built.bundle_dir, device="cpu")
    proc = _popen("run", str(built.bundle_dir), "--serve", "stdio", "--device", "cpu")
    try:
        obs = [[1.0, 0.0, 0.5], [0.0, 1.0, -2.0], [-1.0, 0.0, 7.5]]
        for o in obs:  # one line at a time: the reply must come before the next request (flushed)
            proc.stdin.write(json.dumps(o) + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            np.testing.assert_allclose(reply["action"], policy.predict(o), atol=1e-6)
        bad_lines = ["not json", "[1, 2]", "[NaN, 1, 2]", '{"id": 9}', '{"id": "x", "obs": [1, "a", 2]}', "[[[[", "{}"]
        for line in bad_lines:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            assert "error" in reply and "action" not in reply, (line, reply)
        proc.stdin.write('{"id": 5, "obs": [1.0, 0.0, 0.5]}\n')
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        assert reply["id"] == 5 and len(reply["action"]) == 1
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_stdio_discrete_actions_are_integers(built_bundle):
    built = built_bundle("dqn-cartpole")
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(built.bundle_dir), "--serve", "stdio",
                           "--device", "cpu"], input="[0.0, 0.1, 0.02, -0.1]\n", capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["action"] in (0, 1)


def _wait_for_port(proc: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        if line.startswith("listening on tcp:"):
            return int(line.strip().rsplit(":", 1)[1])
        if not line and proc.poll() is not None:
            raise AssertionError("server exited before listening")
    raise AssertionError("server did not start")


def _ask(sock_file, sock, line: str) -> dict:
    sock.sendall(line.encode() + b"\n")
    return json.loads(sock_file.readline())


def test_tcp_sequential_clients_and_clean_sigterm(built_bundle):
    built = built_bundle("ppo-pendulum")
    proc = _popen("run", str(built.bundle_dir), "--serve", "tcp:127.0.0.1:0", "--device", "cpu")
    try:
        port = _wait_for_port(proc)
        for client in range(2):  # several clients, one after the other
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                f = sock.makefile("r")
                assert "action" in _ask(f, sock, "[1.0, 0.0, 0.1]")
                assert "error" in _ask(f, sock, "garbage")
                assert _ask(f, sock, json.dumps({"id": client, "obs": [0.0, 1.0, 0.0]}))["id"] == client
                sock.sendall(b"[1.0, 0.0, 0.1]\n[0.5, 0.5, 0.5]\n")  # two requests in one packet
                assert "action" in json.loads(f.readline()) and "action" in json.loads(f.readline())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "stopped after 10 requests" in proc.stderr.read()
    finally:
        proc.kill()


def test_tcp_sigint_stops_an_idle_server(built_bundle):
    proc = _popen("run", str(built_bundle("ppo-pendulum").bundle_dir), "--serve", "tcp:0", "--device", "cpu")
    try:
        _wait_for_port(proc)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_run_episodes_prints_returns_and_latency(built_bundle):
    built = built_bundle("ppo-pendulum")
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(built.bundle_dir), "--env", "Pendulum-v1",
                           "--episodes", "2", "--seed", "3"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("episode   1  seed 3") and "p99" in lines[0]
    assert "mean return" in lines[-1] and "over 2 episodes" in lines[-1]
    assert proc.stderr.count("warning:") == 1  # auto fell back to the CPU, said once


def test_bench_reports_invoke_and_predict(built_bundle):
    proc = subprocess.run([sys.executable, "-m", "edgekit", "bench", str(built_bundle("dqn-cartpole").bundle_dir),
                           "--iterations", "200", "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (cpu,) = data["results"]
    assert cpu["device"] == "cpu" and cpu["invoke"]["n"] == 200 and cpu["predict"]["p50_us"] > 0


def test_a_non_finite_action_is_an_error_reply_or_the_substitute_never_an_exit(built_bundle, tmp_path):
    """Unscaled actions with bounds whose range overflows float32: the JSON encoding (allow_nan=False) runs
    inside the error handling, so the reply is an error, or the --on-bad-obs substitute, and the server goes
    on."""
    from test_verify import huge_bounds_bundle

    from edgekit.core.errors import BundleError
    from edgekit.runtime.bad_obs import BadObsGuard
    from edgekit.runtime.serve import handle_line

    bundle = huge_bounds_bundle(built_bundle, tmp_path)
    try:
        policy = EdgePolicy.load(bundle, device="cpu")
    except BundleError as exc:  # a manifest check that refuses such bounds is the other good answer
        assert "bound" in exc.message
        return
    assert "not finite" in json.loads(handle_line(policy, "[1.0, 0.0, 0.5]"))["error"]
    hold = BadObsGuard.for_space(policy.manifest.action_space, "hold")
    reply = json.loads(handle_line(policy, '{"id": 4, "obs": [1.0, 0.0, 0.5]}', hold))
    assert reply["id"] == 4 and reply["substituted"] == "hold" and reply["action"] == [0.0] and hold.bad == 1
    for mode in ("error", "hold"):
        proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(bundle), "--device", "cpu", "--serve",
                               "stdio", "--on-bad-obs", mode], input="[1.0, 0.0, 0.5]\n[0.0, 1.0, 0.2]\n",
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        replies = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(replies) == 2 and all(("error" in r) == (mode == "error") for r in replies), replies
