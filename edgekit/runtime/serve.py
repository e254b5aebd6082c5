"""Control-loop servers: one JSON observation per line in, one JSON action per line out.

Protocol (stdio and TCP alike), one request per line:

    [0.1, -0.9, 0.3]                    -> {"action": [1.52]}
    {"id": 7, "obs": [0.1, -0.9, 0.3]}  -> {"id": 7, "action": [1.52]}
    not json / wrong shape / NaN        -> {"error": "..."}            (the loop goes on)

Discrete actions are integers (``{"action": 1}``), MultiDiscrete ones lists of
integers, MultiBinary ones lists of 0.0/1.0 (as SB3's predict returns them).
Observations are what the env returns, as JSON: a number for Discrete, lists
for Box / MultiDiscrete / MultiBinary, and for a Dict space an object of
key -> value, inside the request object (``{"obs": {"pos": [0.1, 0.2],
"mode": 2}}``) or on its own (``{"pos": [0.1, 0.2], "mode": 2}``: an object
without an ``"obs"`` field is the observation when the space is a Dict; a
Dict with a key named ``obs`` needs the request object). Every response line is
flushed at once. With a ``BadObsGuard`` (``--on-bad-obs hold|zero``) a bad
line is answered with a substitute action instead of an error
(``{"action": ..., "substituted": "hold", "reason": "..."}``), see
``edgekit.runtime.bad_obs``; bad lines are counted either way. Numpy and the
interpreter only.
"""

from __future__ import annotations

import io
import json
import math
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any

from edgekit.errors import EdgekitError, UsageError
from edgekit.runtime.bad_obs import BadObsGuard
from edgekit.runtime.policy import EdgePolicy

MAX_LINE_BYTES = 1 << 20


def handle_line(policy: EdgePolicy, line: str, guard: BadObsGuard | None = None) -> str:
    """Answer one request line with one response line (no trailing newline).

    Without a ``guard`` a bad line is answered with an error and not counted.
    """
    request_id: Any = None
    try:
        request = json.loads(line, parse_constant=_reject_constant)
        if isinstance(request, dict) and ("obs" in request or policy.encoder.keys is None):
            request_id = request.get("id")
            if "obs" not in request:
                raise ValueError('a request object needs an "obs" field')
            obs = request["obs"]
        else:
            obs = request  # a list or number; for a Dict space, an object that is the observation itself
        action = policy.predict(obs)
        response: dict[str, Any] = {"action": action.tolist()}
        if guard is not None:
            guard.accepted(action)
            if guard.count_saturation:
                _note_saturation(policy, obs, guard, response)
    except (ValueError, EdgekitError, RecursionError) as exc:
        message = exc.message if isinstance(exc, EdgekitError) else f"bad request: {exc}"
        response = guard.rejected(message) if guard is not None else {"error": message}
    if _echoable(request_id):
        response = {"id": request_id, **response}
    return json.dumps(response, allow_nan=False)


def _echoable(request_id: Any) -> bool:
    """A scalar id that JSON can carry back (1e400 parses to inf, which it cannot)."""
    if isinstance(request_id, float):
        return math.isfinite(request_id)
    return isinstance(request_id, (str, int)) and not isinstance(request_id, bool)


def _note_saturation(policy: EdgePolicy, obs: Any, guard: BadObsGuard, response: dict[str, Any]) -> None:
    """Count features outside the int8 input range: clipped, so far outside the calibration range."""
    count = policy.saturated_features(obs)
    if count:
        guard.saturated += 1
        response["saturated"] = count


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid observation value")


def serve_lines(policy: EdgePolicy, lines: Iterable[str], out: IO[str], guard: BadObsGuard | None = None) -> int:
    """Answer each non-empty line; returns how many requests were answered."""
    count = 0
    for line in lines:
        if not line.strip():
            continue
        reply = json.dumps(_too_long(guard)) if len(line) > MAX_LINE_BYTES else handle_line(policy, line, guard)
        out.write(reply + "\n")
        out.flush()
        count += 1
    return count


def _too_long(guard: BadObsGuard | None) -> dict[str, Any]:
    message = f"request line longer than {MAX_LINE_BYTES} bytes"
    return guard.rejected(message) if guard is not None else {"error": message}


def serve_stdio(policy: EdgePolicy, guard: BadObsGuard | None = None) -> int:
    """Serve on stdin/stdout until end of input (bytes that are not UTF-8 make a bad line, not a crash)."""
    raw = getattr(sys.stdin, "buffer", None)
    lines = io.TextIOWrapper(raw, encoding="utf-8", errors="replace") if raw is not None else sys.stdin
    return serve_lines(policy, lines, sys.stdout, guard)


def parse_tcp_address(spec: str) -> tuple[str, int]:
    """``tcp:HOST:PORT`` or ``tcp:PORT`` (loopback)."""
    parts = spec.split(":")
    if parts[0] != "tcp" or len(parts) not in (2, 3):
        raise UsageError(f"unknown --serve address {spec!r}", hint="use stdio, tcp:PORT or tcp:HOST:PORT")
    host = parts[1] if len(parts) == 3 else "127.0.0.1"
    try:
        port = int(parts[-1])
    except ValueError:
        raise UsageError(f"port {parts[-1]!r} is not a number", hint="use tcp:HOST:PORT") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is out of range")
    return host or "127.0.0.1", port


class TCPServer:
    """Sequential clients over TCP; SIGINT/SIGTERM stop it cleanly between requests."""

    def __init__(self, policy: EdgePolicy, host: str, port: int, guard: BadObsGuard | None = None) -> None:
        self.policy = policy
        self.guard = guard
        self._stop = threading.Event()
        try:
            self.sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()[:2]

    def stop(self, *_args: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop the server between requests (call before announcing it)."""
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def serve_forever(self) -> int:
        """Accept clients one after another until stopped; returns requests answered."""
        answered = 0
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    break
                if self.guard is not None:
                    self.guard.forget()
                with conn:
                    answered += self._serve_client(conn)
        finally:
            self.sock.close()
        return answered

    def _serve_client(self, conn: socket.socket) -> int:
        conn.settimeout(0.2)
        buffer = b""
        answered = 0
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > MAX_LINE_BYTES and b"\n" not in buffer:
                conn.sendall(json.dumps(_too_long(self.guard)).encode() + b"\n")
                buffer = b""
                continue
            *lines, buffer = buffer.split(b"\n")
            replies = [handle_line(self.policy, raw.decode("utf-8", "replace"), self.guard)
                       for raw in lines if raw.strip()]
            if replies:
                try:
                    conn.sendall(("\n".join(replies) + "\n").encode())
                except OSError:
                    break
                answered += len(replies)
        return answered


__all__ = ["BadObsGuard", "TCPServer", "handle_line", "parse_tcp_address", "serve_lines", "serve_stdio"]
