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
Dict with a key named ``obs`` needs the request object). A request may hold a
batch (one more leading dimension) of at most ``MAX_BATCH`` observations.

Framing (``runtime.lines``): a request is the bytes up to one ``\\n`` (a
``\\r`` inside is whitespace, never a line end); blank lines are skipped; a
line over ``MAX_LINE_BYTES`` is discarded whole and answered with one error,
and nothing past the limit is held in memory. So the Nth reply answers the
Nth request, always. At end of input a last line without its ``\\n`` is
answered too.

Every reply is written at once. With a ``BadObsGuard`` (``--on-bad-obs
hold|zero``) a bad line — or an action the policy cannot give as finite
numbers — is answered with a substitute action instead of an error
(``{"action": ..., "substituted": "hold", "reason": "..."}``), see
``edgekit.runtime.bad_obs``; bad lines are counted either way. Should the
Edge TPU fail mid-run, the policy moves to the CPU int8 model
(``EdgePolicy.predict``) and every reply computed there carries
``"fallback": "cpu"``.

TCP: one thread serves every client as its bytes arrive (a ``selectors``
loop), so an idle or trickling client never delays another; a client that
completes no request for ``idle_timeout`` seconds is disconnected (half-open
peers, slowloris), and past ``MAX_CLIENTS`` connections the longest-idle
client makes room. Numpy and the interpreter only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import signal
import socket
import time
import warnings
from collections.abc import Iterable
from typing import IO, Any

from edgekit.errors import BundleError, EdgekitError, OutputError, UsageError
from edgekit.runtime.bad_obs import BadObsGuard
from edgekit.runtime.lines import TOO_LONG, LineFramer
from edgekit.runtime.policy import EdgePolicy

MAX_LINE_BYTES = 1 << 20  # one request line, without its newline
MAX_BATCH = 256  # observations in one request: bounds the work (and the reply) one line can ask for
READ_CHUNK = 1 << 16  # bytes read per turn: one client's turn in the TCP loop is bounded by it
IDLE_TIMEOUT_S = 60.0  # TCP: a client that completes no request for this long is disconnected (0: never)
ACTION_TEXTS = 4096  # JSON texts of single actions remembered (an int8 output has 256 levels per value)
MAX_CLIENTS = 64  # TCP: connections served at once; one more disconnects the longest idle
MAX_PENDING_REPLY_BYTES = 4 << 20  # TCP: a client that does not read its replies is not read from meanwhile
NON_FINITE_ACTION = ("the policy's action is not finite (NaN or infinity): the bundle's action bounds or "
                     "model are broken; rebuild it")

_DECODER = json.JSONDecoder(parse_constant=lambda name: _reject_constant(name))
_SCAN = _DECODER.scan_once  # the C scanner json.loads runs
_JSON_SPACE = " \t\n\r"
_ENCODER = json.JSONEncoder(allow_nan=False)
_PLAIN_ENCODER = json.JSONEncoder()  # replies with no number from the policy (errors)
_isfinite = math.isfinite


class ExposedServerWarning(UserWarning):
    """The TCP server listens on every network interface."""


# --- one line -----------------------------------------------------------------------------------------


class Responder:
    """Answers request lines for one policy (one per server; ``batch_depths`` prepared once)."""

    def __init__(self, policy: EdgePolicy) -> None:
        self.policy = policy
        self.dict_space = policy.encoder.keys is not None
        # nesting depth of one observation (per Dict key): one level more is a batch
        if policy.encoder.keys is None:
            self._depth: int | dict[str, int] = len(policy.observation_shape)
        else:
            self._depth = {key: len(space.shape) for key, space, _part in policy.encoder.layout()}
        self._flat = self._depth == 1  # one observation is a flat list: a list of lists is a batch
        self._action_shape = policy.manifest.action_space.shape
        self._texts: dict[bytes, str] = {}  # an action's bytes -> its JSON text

    def reply(self, line: bytes | str, guard: BadObsGuard | None = None) -> str:
        """One response line (no trailing newline) for one request line. Without a ``guard`` a bad line is
        answered with an error and not counted."""
        request_id: Any = None
        policy = self.policy
        try:
            request = _parse(line if type(line) is str else line.decode("utf-8"))  # type: ignore[union-attr]
            if type(request) is dict and ("obs" in request or not self.dict_space):
                request_id = request.get("id")
                if "obs" not in request:
                    raise ValueError('a request object needs an "obs" field')
                obs = request["obs"]
            else:
                obs = request  # a list or number; for a Dict space, an object that is the observation itself
            if not (self._flat and type(obs) is list and obs and type(obs[0]) is not list):  # not one flat obs
                self._check_batch(obs)
            action = policy.predict(obs)
            if action.shape == self._action_shape:  # one action: an int8 model gives few distinct ones
                key = action.tobytes()
                text = self._texts.get(key)
                if text is None:
                    text = _action_json(action.tolist())  # BundleError for NaN or infinity: never cached
                    if len(self._texts) < ACTION_TEXTS:
                        self._texts[key] = text
            else:
                text = _action_json(action.tolist())
            head = '{"action": ' if request_id is None or not _echoable(request_id) else \
                f'{{"id": {_PLAIN_ENCODER.encode(request_id)}, "action": '
            if guard is not None:
                if guard.count_saturation:
                    text += _saturation(policy, obs, guard)
                if guard.mode == "hold":
                    guard.accepted(action)
            if policy.tpu_failure is not None:
                text += ', "fallback": "cpu"'
            return head + text + "}"
        except (ValueError, EdgekitError, RecursionError) as exc:
            message = exc.message if isinstance(exc, EdgekitError) else f"bad request: {exc}"
            response = guard.rejected(message) if guard is not None else {"error": message}
            if request_id is not None and _echoable(request_id):
                response = {"id": request_id, **response}
            return _PLAIN_ENCODER.encode(response)

    def _check_batch(self, obs: Any) -> None:
        depth = self._depth
        if type(depth) is int:
            rows = _rows(obs, depth)
        elif type(obs) is dict:
            rows = max((_rows(obs[key], d) for key, d in depth.items() if key in obs), default=1)
        else:
            return
        if rows > MAX_BATCH:
            raise UsageError(f"a request holds at most {MAX_BATCH} observations, this one {rows}")

    def too_long(self, guard: BadObsGuard | None = None) -> str:
        message = f"request line longer than {MAX_LINE_BYTES} bytes (discarded)"
        return _PLAIN_ENCODER.encode(guard.rejected(message) if guard is not None else {"error": message})

    def unexpected(self, exc: Exception, guard: BadObsGuard | None = None) -> str:
        """A bug in edgekit: the server answers and goes on."""
        message = f"unexpected {type(exc).__name__}: {exc} (an edgekit bug; please report it)"
        return _PLAIN_ENCODER.encode(guard.rejected(message) if guard is not None else {"error": message})

    def answer(self, lines: list[bytes | None], guard: BadObsGuard | None) -> list[str]:
        """Replies for what ``LineFramer.feed`` returned (blank lines get none)."""
        replies = []
        for line in lines:
            if line is TOO_LONG:
                replies.append(self.too_long(guard))
            elif line.strip():  # type: ignore[union-attr]
                try:
                    replies.append(self.reply(line, guard))  # type: ignore[arg-type]
                except Exception as exc:  # never a dead server for one request
                    replies.append(self.unexpected(exc, guard))
        return replies


def _rows(value: Any, depth: int) -> int:
    """How many observations ``value`` holds, for observations nested ``depth`` lists deep."""
    x = value
    for _ in range(depth + 1):
        if type(x) is not list or not x:
            return 1
        x = x[0]
    return len(value)


def handle_line(policy: EdgePolicy, line: str | bytes, guard: BadObsGuard | None = None) -> str:
    """Answer one request line with one response line (no trailing newline)."""
    return Responder(policy).reply(line, guard)


def _echoable(request_id: Any) -> bool:
    """A scalar id that JSON can carry back (1e400 parses to inf, which it cannot)."""
    if isinstance(request_id, float):
        return math.isfinite(request_id)
    return isinstance(request_id, (str, int)) and not isinstance(request_id, bool)


def _saturation(policy: EdgePolicy, obs: Any, guard: BadObsGuard) -> str:
    """Count features outside the int8 input range (clipped, so far outside the calibration range): the
    reply's ``"saturated"`` field, or nothing."""
    count = policy.saturated_features(obs)
    if not count:
        return ""
    guard.tally.saturated += 1
    return f', "saturated": {count}'


def _parse(text: str) -> Any:
    """``json.loads`` with NaN/Infinity refused; the scanner directly for a plain line (what
    ``JSONDecoder.decode`` does around it costs as much as the parse), the decoder for everything
    else, which also words the errors."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:  # leading whitespace, or not JSON
        return _DECODER.decode(text)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return _DECODER.decode(text)  # raises "Extra data"
    return value


def _action_json(values: Any) -> str:
    """An action's JSON text, as ``json.dumps(values, allow_nan=False)`` writes it (a flat list of floats
    or ints, or one int, formatted directly: the encoder's setup costs more than the formatting);
    ``BundleError`` when it is not finite."""
    kind = type(values)
    if kind is list and values:
        first = type(values[0])
        if first is float and _isfinite(sum(values)):
            return "[" + ", ".join(map(float.__repr__, values)) + "]"
        if first is int:
            return "[" + ", ".join(map(int.__repr__, values)) + "]"
    elif kind is int:
        return int.__repr__(values)
    try:
        return _ENCODER.encode(values)
    except ValueError:  # NaN or infinity
        raise BundleError(NON_FINITE_ACTION) from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid observation value")


# --- stdio --------------------------------------------------------------------------------------------


class _Stop(BaseException):
    """SIGTERM / SIGHUP: leave the stdio loop (a BaseException: no request handler may swallow it)."""


def serve_lines(policy: EdgePolicy, lines: Iterable[str], out: IO[str], guard: BadObsGuard | None = None) -> int:
    """Answer each non-empty line of an iterable (already framed); returns how many were answered."""
    responder, count = Responder(policy), 0
    for line in lines:
        replies = responder.answer([TOO_LONG if len(line) > MAX_LINE_BYTES else line.encode()], guard)
        for reply in replies:
            out.write(reply + "\n")
            out.flush()
        count += len(replies)
    return count


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
            data = read(stdin_fd, READ_CHUNK)
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
    """One TCP connection: its framing, pending replies, bad-observation memory and last activity."""

    __slots__ = ("sock", "framer", "out", "guard", "active", "closing", "events")

    def __init__(self, sock: socket.socket, guard: BadObsGuard | None, now: float) -> None:
        self.sock = sock
        self.framer = LineFramer(MAX_LINE_BYTES)
        self.out = bytearray()
        self.guard = guard
        self.active = now  # last complete request, or reply bytes taken
        self.closing = False  # the client sent EOF: close once the replies are out
        self.events = selectors.EVENT_READ  # what the selector watches for


class TCPServer:
    """Every client at once, in one thread (see the module docstring); SIGINT/SIGTERM stop it cleanly."""

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
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self.sock, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
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
        """Serve until stopped; returns requests answered."""
        select, clients = self._selector.select, self._clients
        next_sweep = time.monotonic() + 1.0
        try:
            while not self._stopping:
                for key, mask in select(timeout=1.0 if clients else None):
                    data = key.data
                    if data == "listen":
                        self._accept()
                    elif data == "wake":
                        self._drain_wake()
                    else:
                        client = clients.get(key.fileobj)  # type: ignore[call-overload]
                        if client is None:
                            continue
                        if mask & selectors.EVENT_WRITE:
                            self._flush(client)
                        if mask & selectors.EVENT_READ and client.sock in clients:
                            self._read(client)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 1.0
        finally:
            for client in list(clients.values()):
                self._close(client)
            self._selector.close()
            self.sock.close()
            self._wake_r.close()
            self._wake_w.close()
        return self.answered

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors, a connection reset before accept: keep serving the others
                return
            if len(self._clients) >= self.max_clients:
                self._close(min(self._clients.values(), key=lambda c: c.active))
            conn.setblocking(False)
            _keepalive(conn)
            guard = self.guard.for_client() if self.guard is not None else None
            client = _Client(conn, guard, time.monotonic())
            self._clients[conn] = client
            self._selector.register(conn, selectors.EVENT_READ, "client")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(64):
                pass

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        if data:
            lines = client.framer.feed(data)
        else:
            tail = client.framer.finish()
            lines = [tail] if tail is not None else []
            client.closing = True
        if lines:
            replies = self.responder.answer(lines, client.guard)
            if replies:
                client.out += ("\n".join(replies) + "\n").encode()
                self.answered += len(replies)
                client.active = time.monotonic()
                if client.events == selectors.EVENT_READ and len(client.out) < READ_CHUNK:
                    try:  # the usual case: the socket takes the reply at once, nothing else to watch
                        sent = client.sock.send(client.out)
                    except OSError:
                        sent = 0
                    if sent == len(client.out) and not client.closing:
                        client.out.clear()
                        return
                    del client.out[:sent]
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        """Send what the socket takes now; wait for EVENT_WRITE for the rest."""
        if client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(client)
                return
            if sent:
                del client.out[:sent]
                client.active = time.monotonic()
        if not client.out and client.closing:
            self._close(client)
            return
        reading = not client.closing and len(client.out) < MAX_PENDING_REPLY_BYTES  # else: let it read first
        events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if client.out else 0)
        if events != client.events:
            client.events = events
            self._selector.modify(client.sock, events, "client")

    def _sweep(self, now: float) -> None:
        if self.idle_timeout <= 0:
            return
        for client in [c for c in self._clients.values() if now - c.active > self.idle_timeout]:
            self._close(client)

    def _close(self, client: _Client) -> None:
        if self._clients.pop(client.sock, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()


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


__all__ = ["MAX_BATCH", "MAX_LINE_BYTES", "BadObsGuard", "ExposedServerWarning", "Responder", "TCPServer",
           "format_address", "handle_line", "parse_tcp_address", "serve_lines", "serve_stdio"]
