"""Control-loop servers: the JSON-lines protocol (``runtime.protocol``) on stdin/stdout or TCP.

Framing (``runtime.lines``), on both transports: a request is the bytes up to
one ``\n`` (a ``\r`` inside is whitespace, never a line end); blank lines are
skipped; a line over ``MAX_LINE_BYTES`` is discarded whole and answered with
one error, and nothing past the limit is held in memory. So the Nth reply
answers the Nth request, always. At end of input a last line without its
``\n`` is answered too. Every reply is written at once.

stdio reads and writes the file descriptors directly (no buffering between
the robot and the policy); a full disk is an ``OutputError``, a reader that
went away ends the loop.

TCP: a thread per client (at most ``MAX_CLIENTS``; one more disconnects the
longest idle), each blocked in its own ``recv``, so an idle or trickling
client never delays another; the policy answers one line at a time under a
lock. A client that completes no request for ``idle_timeout`` seconds is
disconnected (half-open peers, slowloris), TCP keepalive notices peers that
vanished. Numpy and the interpreter only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
import warnings
from typing import Any

from edgekit.core.errors import OutputError, UsageError
from edgekit.runtime.bad_obs import BadObsGuard
from edgekit.runtime.lines import LineFramer
from edgekit.runtime.policy import EdgePolicy
from edgekit.runtime.protocol import MAX_BATCH, MAX_LINE_BYTES, Responder, handle_line

READ_CHUNK = 1 << 16  # bytes read at once
IDLE_TIMEOUT_S = 60.0  # TCP: a client that completes no request for this long is disconnected (0: never)
MAX_CLIENTS = 64  # TCP: connections served at once; one more disconnects the longest idle
WATCH_INTERVAL_S = 1.0  # TCP: how often idle clients are looked for


class ExposedServerWarning(UserWarning):
    """The TCP server listens on every network interface."""


# --- stdio --------------------------------------------------------------------------------------------


class _Stop(BaseException):
    """SIGTERM / SIGHUP: leave the stdio loop (a BaseException: no request handler may swallow it)."""


def serve_stdio(policy: EdgePolicy, guard: BadObsGuard | None = None, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Serve on stdin/stdout until end of input (or SIGTERM/SIGHUP); returns how many requests were answered.

    Reads and writes the file descriptors directly: one ``read`` and one ``write`` per request, no
    buffering between the robot and the policy. Raises ``OutputError`` when replies cannot be written
    (a full disk); a reader that went away (EPIPE) ends the loop quietly.
    """
    responder, framer = Responder(policy), LineFramer(MAX_LINE_BYTES)
    answer, feed, read, write = responder.answer, framer.feed, os.read, os.write
    answered = 0

    def stop(*_args: Any) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                data = read(stdin_fd, READ_CHUNK)
            except BlockingIOError:  # a non-blocking stdin handed over by the parent: wait for it
                select.select([stdin_fd], [], [])
                continue
            if not data:
                tail = framer.finish()
                replies = answer([tail], guard) if tail is not None else []
            else:
                replies = answer(feed(data), guard)
            if replies:
                out = ("\n".join(replies) + "\n").encode()
                try:
                    written = write(stdout_fd, out)
                except OSError:
                    written = 0
                if written != len(out) and not _write_all(stdout_fd, out[written:]):
                    break
                answered += len(replies)
            if not data:
                break
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return answered


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False when the reader is gone (EPIPE), OutputError for anything else."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BrokenPipeError:
            return False
        except BlockingIOError:  # a non-blocking stdout: wait until it takes more
            select.select([], [fd], [])
        except OSError as exc:
            raise OutputError(f"cannot write replies to standard output: {exc.strerror or exc}",
                              hint="free space on the device stdout goes to, or send stdout elsewhere") from None
    return True


# --- TCP ----------------------------------------------------------------------------------------------


def parse_tcp_address(spec: str) -> tuple[str, int]:
    """``tcp:PORT`` (loopback), ``tcp:HOST:PORT`` or ``tcp:[IPV6]:PORT``."""
    if not spec.startswith("tcp:"):
        raise UsageError(f"unknown --serve address {spec!r}",
                         hint="use stdio, tcp:PORT, tcp:HOST:PORT or tcp:[IPV6]:PORT")
    rest = spec[4:]
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]:")
        if not bracket or not host:
            raise UsageError(f"unknown --serve address {spec!r}", hint="write an IPv6 address as tcp:[::1]:PORT")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    elif ":" not in rest:
        host, port_text = "", rest
    else:
        raise UsageError(f"unknown --serve address {spec!r}", hint="write an IPv6 address as tcp:[::1]:PORT")
    if not port_text.isdigit():
        raise UsageError(f"port {port_text!r} is not a number", hint="use tcp:HOST:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is out of range")
    return host or "127.0.0.1", port


def format_address(host: str, port: int) -> str:
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


class _Client:
    """One TCP connection: its socket, bad-observation memory and last activity."""

    __slots__ = ("sock", "guard", "active", "thread")

    def __init__(self, sock: socket.socket, guard: BadObsGuard | None) -> None:
        self.sock = sock
        self.guard = guard
        self.active = time.monotonic()  # connected, or last reply sent
        self.thread: threading.Thread | None = None


class TCPServer:
    """Every client at once (see the module docstring); SIGINT/SIGTERM stop it cleanly."""

    def __init__(self, policy: EdgePolicy, host: str, port: int, guard: BadObsGuard | None = None,
                 idle_timeout: float = IDLE_TIMEOUT_S, max_clients: int = MAX_CLIENTS) -> None:
        self.responder = Responder(policy)
        self.guard = guard
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.answered = 0
        self._stopping = False
        if host in ("0.0.0.0", "::"):
            warnings.warn(f"listening on every network interface ({host}): anyone who can reach this machine can "
                          "send observations and read actions, with no authentication; use tcp:127.0.0.1:PORT to "
                          "stay on this machine", ExposedServerWarning, stacklevel=2)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            dual = host == "::" and socket.has_dualstack_ipv6()
            self.sock = socket.create_server((host, port), family=family, dualstack_ipv6=dual)
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UsageError(f"cannot listen on {format_address(host, port)}: {reason}") from None
        self.address = self.sock.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._policy_lock = threading.Lock()  # one line at a time reaches the policy
        self._clients_lock = threading.Lock()
        self._clients: dict[socket.socket, _Client] = {}

    def stop(self, *_args: Any) -> None:
        """Stop between requests (safe from a signal handler or another thread)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop the server between requests (call before announcing it)."""
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def serve_forever(self) -> int:
        """Accept clients and watch for idle ones until stopped; returns requests answered."""
        watched = [self.sock, self._wake_r]
        try:
            while not self._stopping:
                ready, _, _ = select.select(watched, [], [], WATCH_INTERVAL_S)
                if self.sock in ready:
                    self._accept()
                self._disconnect_idle(time.monotonic())
        finally:
            self.sock.close()
            with self._clients_lock:
                clients = list(self._clients.values())
            for client in clients:
                _hang_up(client.sock)
            for client in clients:
                if client.thread is not None:
                    client.thread.join(5)
            self._wake_r.close()
            self._wake_w.close()
        return self.answered

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:  # out of file descriptors, a connection reset before accept: keep serving the others
            return
        with self._clients_lock:
            if len(self._clients) >= self.max_clients:
                _hang_up(min(self._clients.values(), key=lambda c: c.active).sock)
            client = _Client(conn, self.guard.for_client() if self.guard is not None else None)
            self._clients[conn] = client
        _keepalive(conn)
        client.thread = threading.Thread(target=self._serve_client, args=(client,), daemon=True,
                                         name=f"edgekit-client-{conn.fileno()}")
        client.thread.start()

    def _disconnect_idle(self, now: float) -> None:
        if self.idle_timeout <= 0:
            return
        with self._clients_lock:
            idle = [c for c in self._clients.values() if now - c.active > self.idle_timeout]
        for client in idle:
            _hang_up(client.sock)  # its thread sees the end of the stream and leaves

    def _serve_client(self, client: _Client) -> None:
        """One client's thread: read, answer each complete line, write; until it hangs up or is hung up on."""
        sock, guard, framer = client.sock, client.guard, LineFramer(MAX_LINE_BYTES)
        answer, lock, recv, sendall = self.responder.answer, self._policy_lock, sock.recv, sock.sendall
        try:
            while True:
                try:
                    data = recv(READ_CHUNK)
                except OSError:
                    break
                if data:
                    lines = framer.feed(data)
                else:
                    tail = framer.finish()
                    lines = [tail] if tail is not None else []
                if lines:
                    with lock:
                        replies = answer(lines, guard)
                        self.answered += len(replies)
                    if replies:
                        try:
                            sendall(("\n".join(replies) + "\n").encode())
                        except OSError:
                            break
                        client.active = time.monotonic()
                if not data:
                    break
        finally:
            with self._clients_lock:
                self._clients.pop(sock, None)
            sock.close()


def _hang_up(sock: socket.socket) -> None:
    """End a connection from another thread: the blocked recv or send of its thread returns."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _keepalive(conn: socket.socket) -> None:
    """TCP keepalive: the kernel notices a peer that vanished (a half-open connection) within a minute."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):
                conn.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


__all__ = ["IDLE_TIMEOUT_S", "MAX_BATCH", "MAX_CLIENTS", "MAX_LINE_BYTES", "BadObsGuard", "ExposedServerWarning",
           "Responder", "TCPServer", "format_address", "handle_line", "parse_tcp_address", "serve_stdio"]
