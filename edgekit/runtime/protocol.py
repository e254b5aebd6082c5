"""The JSON-lines protocol of the control-loop servers: one request line in, one reply line out.

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

With a ``BadObsGuard`` (``--on-bad-obs hold|zero``) a bad line — or an action
the policy cannot give as finite numbers — is answered with a substitute
action instead of an error (``{"action": ..., "substituted": "hold",
"reason": "..."}``), see ``edgekit.runtime.bad_obs``; bad lines are counted
either way. ``--count-saturation`` adds ``"saturated": N`` to replies whose
observation has N features outside the int8 input range. Should the Edge TPU
fail mid-run, the policy moves to the CPU int8 model (``EdgePolicy.predict``)
and every reply computed there carries ``"fallback": "cpu"``.

The replies are what ``json.dumps`` writes (with ``allow_nan=False``); the
common ones are formatted directly, and a policy's few distinct single
actions remembered as text, because a robot's round trip through the server
should cost little more than its pipe (``scripts/bench_runtime.py``).
Numpy and the interpreter only.
"""

from __future__ import annotations

import json
import math
from typing import Any

from edgekit.core.errors import BundleError, EdgekitError, UsageError
from edgekit.runtime.bad_obs import BadObsGuard
from edgekit.runtime.lines import TOO_LONG
from edgekit.runtime.policy import EdgePolicy

MAX_LINE_BYTES = 1 << 20  # one request line, without its newline
MAX_BATCH = 256  # observations in one request: bounds the work (and the reply) one line can ask for
ACTION_TEXTS = 4096  # JSON texts of single actions remembered (an int8 output has 256 levels per value)
NON_FINITE_ACTION = ("the policy's action is not finite (NaN or infinity): the bundle's action bounds or "
                     "model are broken; rebuild it")

_DECODER = json.JSONDecoder(parse_constant=lambda name: _reject_constant(name))
_SCAN = _DECODER.scan_once  # the C scanner json.loads runs
_JSON_SPACE = " \t\n\r"
_ENCODER = json.JSONEncoder(allow_nan=False)
_PLAIN_ENCODER = json.JSONEncoder()  # replies with no number from the policy (errors)
_isfinite = math.isfinite


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


__all__ = ["MAX_BATCH", "MAX_LINE_BYTES", "NON_FINITE_ACTION", "Responder", "handle_line"]
