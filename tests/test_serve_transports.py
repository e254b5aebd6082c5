"""The servers' transports against hostile and careless clients (issue 17 items 4, 5, 9).

Exact framing on both transports (a request is one ``\\n``-terminated line, over-long lines discarded whole
with one error and never held in memory), TCP clients that cannot starve each other (an idle one, a
trickling one), idle timeouts, addresses (IPv6, every interface), a full disk on stdout, and the bound on
a batch. Each drives a real `edgekit run --serve` process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO

from edgekit.runtime.serve import MAX_BATCH, MAX_LINE_BYTES

BUNDLE = "ppo-pendulum"
OBS = [1.0, 0.0, 0.5]


def _server(bundle, address: str, *extra: str) -> tuple[subprocess.Popen, int | None]:
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "run", str(bundle), "--device", "cpu", "--serve",
                             address, *extra], stdin=subprocess.PIPE if address == "stdio" else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.head = []  # type: ignore[attr-defined]  # stderr before "listening on"
    if address == "stdio":
        return proc, None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        if line.startswith("listening on tcp:"):
            return proc, int(line.strip().rsplit(":", 1)[1])
        if not line and proc.poll() is not None:
            break
        proc.head.append(line)  # type: ignore[attr-defined]
    proc.kill()
    raise AssertionError(f"the server did not start: {proc.head} {proc.stderr.read().decode()}")


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        proc.kill()
    return "" if proc.stderr.closed else proc.stderr.read().decode()


def _connect(port: int, family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect((host, port))
    return sock


def _replies(sock: socket.socket, count: int) -> list[dict]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def _request(i: int) -> bytes:
    return json.dumps({"id": i, "obs": OBS}).encode() + b"\n"


# --- framing ----------------------------------------------------------------------------------------


def test_stdio_a_bare_carriage_return_does_not_split_a_request(built_bundle):
    proc, _ = _server(built_bundle(BUNDLE).bundle_dir, "stdio")
    out, err = proc.communicate(b'{"id": 1, "obs": [1.0,\r 0.0, 0.5]}\r\n{"id": 2,\r"obs": [1.0, 0.0, 0.5]}\n',
                                timeout=60)
    replies = [json.loads(line) for line in out.splitlines()]
    assert [r.get("id") for r in replies] == [1, 2] and all("action" in r for r in replies), (replies, err)


@pytest.mark.parametrize("transport", ["stdio", "tcp"])
def test_an_over_long_line_is_discarded_whole_with_one_error(built_bundle, transport):
    """1.1 MiB of spaces then a request on the same line: one error, never an action for the smuggled
    part; the next line is answered as the next request."""
    smuggled = b" " * (MAX_LINE_BYTES + 100_000) + b'{"id": "smuggled", "obs": [1.0, 0.0, 0.5]}\n'
    huge = b"[" + b"0.5, " * (2 * MAX_LINE_BYTES) + b"0.5]\n"  # 10 MiB: one line, one reply
    stream = smuggled + _request(1) + huge + _request(2)
    proc, port = _server(built_bundle(BUNDLE).bundle_dir, "stdio" if transport == "stdio" else "tcp:127.0.0.1:0")
    try:
        if transport == "stdio":
            out, _ = proc.communicate(stream, timeout=120)
            replies = [json.loads(line) for line in out.splitlines()]
        else:
            with _connect(port) as sock:
                sock.sendall(stream)
                sock.shutdown(socket.SHUT_WR)
                replies = _replies(sock, 4)
    finally:
        _stop(proc)
    assert len(replies) == 4, replies
    assert "error" in replies[0] and "longer than" in replies[0]["error"] and "id" not in replies[0]
    assert replies[1]["id"] == 1 and "action" in replies[1]
    assert "error" in replies[2] and replies[3]["id"] == 2 and "action" in replies[3]


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_stdio_never_reads_a_huge_line_into_memory(built_bundle):
    proc, _ = _server(built_bundle(BUNDLE).bundle_dir, "stdio")
    try:
        proc.stdin.write(_request(0))
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 0  # loaded and serving
        before = _peak_rss_kib(proc.pid)
        block = b"7" * (1 << 20)
        for _ in range(200):  # one 200 MiB line
            proc.stdin.write(block)
        proc.stdin.write(b"\n" + _request(1))
        proc.stdin.flush()
        assert "longer than" in json.loads(proc.stdout.readline())["error"]
        assert json.loads(proc.stdout.readline())["id"] == 1
        grown_mib = (_peak_rss_kib(proc.pid) - before) / 1024
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert grown_mib < 16, f"the server's peak RSS grew by {grown_mib:.0f} MiB reading a 200 MiB line"


# --- no client starves another ---------------------------------------------------------------------


def test_tcp_an_idle_and_a_trickling_client_do_not_delay_another(built_bundle):
    proc, port = _server(built_bundle(BUNDLE).bundle_dir, "tcp:127.0.0.1:0")
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        for byte in _request(99)[:-1]:  # a slowloris: one byte every 100 ms, the newline later
            if stop.wait(0.1):
                return
            sock.send(bytes([byte]))

    try:
        idle = _connect(port)  # connects first and says nothing
        slow = _connect(port)
        trickler = threading.Thread(target=trickle, args=(slow,), daemon=True)
        trickler.start()
        time.sleep(0.3)
        with _connect(port) as sock:
            start = time.monotonic()
            for i in range(20):
                sock.sendall(_request(i))
                assert _replies(sock, 1)[0]["id"] == i
            assert time.monotonic() - start < 5
        assert trickler.is_alive()  # all this while the slow client was still trickling its line
        idle.sendall(_request(7))  # the idle client is still served when it speaks
        assert _replies(idle, 1)[0]["id"] == 7
        trickler.join(30)
        slow.sendall(b"\n")  # the trickled request completes
        assert _replies(slow, 1)[0]["id"] == 99
        idle.close()
        slow.close()
    finally:
        stop.set()
        err = _stop(proc)
    assert "stopped after 22 requests" in err, err


def test_tcp_idle_timeout_disconnects_a_silent_client_only(built_bundle):
    proc, port = _server(built_bundle(BUNDLE).bundle_dir, "tcp:127.0.0.1:0", "--idle-timeout", "1")
    try:
        silent, talker = _connect(port), _connect(port)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # the talker keeps requesting; the silent one says nothing
            talker.sendall(_request(1))
            assert _replies(talker, 1)[0]["id"] == 1
            time.sleep(0.2)
        silent.settimeout(5)
        assert silent.recv(1) == b""  # closed by the server
        talker.close()
    finally:
        _stop(proc)


def test_tcp_many_clients_at_once_each_get_their_own_replies_in_order(built_bundle):
    proc, port = _server(built_bundle(BUNDLE).bundle_dir, "tcp:127.0.0.1:0")
    results: dict[int, list[int]] = {}

    def client(k: int) -> None:
        with _connect(port) as sock:
            ids = [k * 1000 + i for i in range(30)]
            payload = b"".join(_request(i) for i in ids)
            for start in range(0, len(payload), 7):  # partial lines, in 7-byte pieces
                sock.sendall(payload[start:start + 7])
            results[k] = [r["id"] for r in _replies(sock, len(ids))]

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        _stop(proc)
    assert results == {k: [k * 1000 + i for i in range(30)] for k in range(20)}


# --- addresses, output, limits ------------------------------------------------------------------------


def test_every_interface_is_said_in_one_warning(built_bundle):
    proc, port = _server(built_bundle(BUNDLE).bundle_dir, "tcp:0.0.0.0:0")
    try:
        with _connect(port) as sock:
            sock.sendall(_request(1))
            assert "action" in _replies(sock, 1)[0]
    finally:
        err = "".join(proc.head) + _stop(proc)  # type: ignore[attr-defined]
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "every network interface (0.0.0.0)" in lines[0], err
    assert "stopped after 1 requests" in err


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_addresses_can_be_given(built_bundle):
    proc, port = _server(built_bundle(BUNDLE).bundle_dir, "tcp:[::1]:0")
    try:
        with _connect(port, socket.AF_INET6, "::1") as sock:
            sock.sendall(_request(6))
            assert _replies(sock, 1)[0]["id"] == 6
    finally:
        _stop(proc)


@pytest.mark.parametrize("address", ["tcp:[::1", "tcp:::1:80", "tcp:1.2.3.4:x", "tcp:99999", "udp:1"])
def test_bad_addresses_are_one_error_line(built_bundle, address):
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(built_bundle(BUNDLE).bundle_dir), "--serve",
                           address], capture_output=True, text=True, cwd=REPO, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdio_to_a_full_disk_is_one_error_line(built_bundle):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(built_bundle(BUNDLE).bundle_dir),
                               "--device", "cpu", "--serve", "stdio"], input=_request(1) * 3, stdout=full,
                              stderr=subprocess.PIPE, cwd=REPO, timeout=120)
    err = proc.stderr.decode()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "No space left on device" in errors[0], err
    assert "unexpected" not in err and "Traceback" not in err


def test_a_batch_is_bounded_per_request(built_bundle):
    lines = [json.dumps({"id": 1, "obs": [OBS] * MAX_BATCH}), json.dumps({"id": 2, "obs": [OBS] * (MAX_BATCH + 1)}),
             "[" + ", ".join(["[0, 0, 0]"] * 90_000) + "]", json.dumps({"id": 3, "obs": OBS})]  # < 1 MiB
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(built_bundle(BUNDLE).bundle_dir), "--device",
                           "cpu", "--serve", "stdio"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(replies) == 4 and len(replies[0]["action"]) == MAX_BATCH
    assert f"at most {MAX_BATCH} observations" in replies[1]["error"] and replies[1]["id"] == 2
    assert "90000" in replies[2]["error"] and replies[3]["id"] == 3
    assert len(proc.stdout) < 64_000  # no 3 MB reply
    assert time.monotonic() - start < 60
