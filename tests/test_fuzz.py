"""Fuzzing every input edgekit reads: only edgekit's own errors come out, nothing crashes.

Hypothesis mutates real inputs — a model zip (raw bytes, and the members and
pickles inside it with valid checksums), a bundle's manifest (bytes and JSON
values), its .tflite model (behind the sha256 check and, re-hashed, straight
to the interpreter), and the server's observation lines. Each test feeds at
least 200 malformed inputs through the library functions, derandomized so
that CI runs the same inputs every time, and checks afterwards that the
valid bundle it copied from is byte for byte unchanged.

Families that count (printed as "fuzz counts: ..."; appended to
``$EDGEKIT_FUZZ_COUNTS`` when set): op-code swaps through every command and a
sweep of builtin op codes in worker processes (tried / clean error / crash /
hang), and framing: chunked streams into the line framer, a hostile stdio
stream in random pieces, and many TCP clients at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE_MODEL, REPO, run_cli
from fuzz_tally import TALLIES, attempt
from fuzz_tally import add as add_counts
from hostile_models import SWAP_SOURCES, SWAP_TARGETS, rehashed_bundle, swap_op_code, swapped_op_bundle, without_outputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.bundle import MANIFEST_NAME, Manifest
from edgekit.bundle.layout import sha256_file
from edgekit.core.errors import EdgekitError
from edgekit.host.loading import load_agent
from edgekit.runtime import EdgePolicy
from edgekit.runtime.bad_obs import BadObsGuard
from edgekit.runtime.lines import TOO_LONG, LineFramer
from edgekit.runtime.serve import MAX_LINE_BYTES, handle_line

EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
# 1e308 as float32 overflows to inf (then refused as not finite): numpy warns on the way.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
PICKLED_FIELDS = ("observation_space", "action_space", "policy_kwargs", "policy_class")
EXAMPLE_SHA256 = sha256_file(EXAMPLE_MODEL)  # before any test runs


@st.composite
def mutations(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with 1-8 bytes replaced, a slice deleted, duplicated or zeroed, or a truncation."""
    return draw(kinded_mutations(original))[1]


MUTATION_KINDS = ("replace", "delete", "duplicate", "zero", "truncate")


@st.composite
def kinded_mutations(draw: st.DrawFn, original: bytes) -> tuple[str, bytes]:
    """(kind, ``original`` mutated that way): see ``mutations``."""
    data = bytearray(original)
    kind = draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "zero", "truncate"]))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    width = draw(st.integers(1, 64))
    if kind == "replace":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "delete":
        del data[at:at + width]
    elif kind == "duplicate":
        data[at:at] = data[at:at + width]
    elif kind == "zero":
        data[at:at + width] = bytes(len(data[at:at + width]))
    else:
        del data[at:]
    if bytes(data) == original:
        data[at % len(data)] ^= 0xFF
    return kind, bytes(data)


def _expect_edgekit_errors_only(call) -> None:
    """Success or an EdgekitError; anything else fails the test (and a crash would end the run)."""
    with contextlib.suppress(EdgekitError):
        call()


def _fingerprint(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bundle(built_bundle) -> Path:
    return built_bundle("ppo-pendulum").bundle_dir


@pytest.fixture
def untouched(bundle):
    """The valid bundle must be byte for byte the same after the fuzzing."""
    before = _fingerprint(bundle)
    yield bundle
    assert _fingerprint(bundle) == before
    EdgePolicy.load(bundle, device="cpu")  # and still loads


# --- model zips -------------------------------------------------------------------------------------


def _rezip(members: dict[str, bytes], path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@FUZZ
@given(data=st.data())
def test_mutated_zip_bytes(tmp_path, data):
    raw = EXAMPLE_MODEL.read_bytes()
    target = tmp_path / "model.zip"
    target.write_bytes(data.draw(mutations(raw)))
    _expect_edgekit_errors_only(lambda: load_agent(target))


@FUZZ
@given(data=st.data(), member=st.sampled_from(["data", "policy.pth", "_stable_baselines3_version",
                                               *(f"pickle:{f}" for f in PICKLED_FIELDS)]))
def test_mutated_zip_members_with_valid_checksums(tmp_path, data, member):
    """Past the zip's CRCs: the data JSON, the weights and each pickle the restricted loader decodes."""
    members = _members(EXAMPLE_MODEL)
    if member.startswith("pickle:"):
        field = member.split(":", 1)[1]
        document = json.loads(members["data"])
        entry = document.get(field) if isinstance(document.get(field), dict) else {}
        payload = base64.b64decode(entry.get(":serialized:", "")) or b"\x80\x05N."
        entry = {**entry, ":serialized:": base64.b64encode(data.draw(mutations(payload))).decode()}
        document[field] = entry
        members["data"] = json.dumps(document).encode()
    else:
        members[member] = data.draw(mutations(members[member]))
    target = tmp_path / "model.zip"
    _rezip(members, target)
    _expect_edgekit_errors_only(lambda: load_agent(target))


# --- manifests --------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.sampled_from(["../../x", "/etc/passwd", "model_int8.tflite", "cpu", "int8", "box", "a" * 300, ""])
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replaced(document, path, new):
    if not path:
        return new
    copy = json.loads(json.dumps(document))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return copy


@pytest.fixture
def scratch_bundle(untouched, tmp_path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(untouched, target)
    return target


def _load_and_predict(bundle_dir: Path) -> None:
    policy = EdgePolicy.load(bundle_dir, device="cpu")
    if policy.encoder.keys is not None:  # a Dict space: one observation and a batch of two, from features
        batch = policy.observations_of(np.zeros((2, policy.encoder.features), dtype=np.float32))
        policy.predict({k: v[0] for k, v in batch.items()})
        policy.predict(batch)
        return
    size = policy.manifest.observation_space.size
    policy.predict(np.zeros(policy.observation_shape, dtype=np.float32))
    policy.predict(np.full((2, size), 50.0, dtype=np.float32).reshape(2, *policy.observation_shape))


@FUZZ
@given(data=st.data())
def test_mutated_manifest_bytes(scratch_bundle, untouched, data):
    original = (untouched / MANIFEST_NAME).read_bytes()
    (scratch_bundle / MANIFEST_NAME).write_bytes(data.draw(mutations(original)))
    _expect_edgekit_errors_only(lambda: _load_and_predict(scratch_bundle))


@FUZZ
@given(data=st.data())
def test_mutated_manifest_values(scratch_bundle, untouched, data):
    document = json.loads((untouched / MANIFEST_NAME).read_text())
    path = data.draw(st.sampled_from(list(_paths(document))))
    mutated = _replaced(document, path, data.draw(JSON_VALUES))
    (scratch_bundle / MANIFEST_NAME).write_text(json.dumps(mutated))
    _expect_edgekit_errors_only(lambda: Manifest.from_dict(mutated))
    _expect_edgekit_errors_only(lambda: _load_and_predict(scratch_bundle))


@pytest.fixture(scope="module")
def dict_bundle(built_bundle) -> Path:
    """A bundle with Dict observations (one-hot, binary and float keys) and MultiDiscrete actions."""
    return built_bundle("ppo-dict-multidiscrete").bundle_dir


@FUZZ
@given(data=st.data())
def test_mutated_dict_manifest_values(dict_bundle, tmp_path_factory, data):
    """The space, encoding and preprocessing of a Dict bundle: hostile values are edgekit errors."""
    scratch = tmp_path_factory.mktemp("dict-bundle", numbered=True)
    target = scratch / "bundle"
    shutil.copytree(dict_bundle, target)
    document = json.loads((dict_bundle / MANIFEST_NAME).read_text())
    paths = [p for p in _paths(document) if p[:1] in (("observation_space",), ("action_space",), ("preprocess",),
                                                      ("postprocess",), ("output",))]
    mutated = _replaced(document, data.draw(st.sampled_from(paths)), data.draw(JSON_VALUES))
    (target / MANIFEST_NAME).write_text(json.dumps(mutated))
    _expect_edgekit_errors_only(lambda: Manifest.from_dict(mutated))
    _expect_edgekit_errors_only(lambda: _load_and_predict(target))
    shutil.rmtree(scratch)


DICT_VALUES = st.one_of(st.floats(), st.integers(-(10**30), 10**30),
                        st.lists(st.one_of(st.floats(), st.integers(-5, 5)), max_size=4),
                        st.lists(st.lists(st.integers(-1, 3), min_size=2, max_size=2), max_size=2),
                        st.sampled_from([True, None, "x", [], {}]))
DICT_OBSERVATIONS = st.dictionaries(st.sampled_from(["pos", "cell", "bins", "signs", "obs", "id", "other"]),
                                    DICT_VALUES, max_size=5)


@settings(max_examples=2 * EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(obs=DICT_OBSERVATIONS, wrap=st.booleans(), mode=st.sampled_from(["error", "hold", "zero"]))
def test_dict_observation_lines_always_get_one_json_answer(dict_bundle, obs, wrap, mode):
    policy = _server_policy(dict_bundle)
    guard = BadObsGuard.for_space(policy.manifest.action_space, mode, count_saturation=True)
    line = json.dumps({"id": 3, "obs": obs} if wrap else obs, allow_nan=True)
    reply = json.loads(handle_line(policy, line, guard))
    assert isinstance(reply, dict) and ("action" in reply) != ("error" in reply)
    if "action" in reply and "substituted" not in reply:
        assert len(reply["action"]) == 2 and all(isinstance(v, int) for v in reply["action"])


# --- tflite models ----------------------------------------------------------------------------------


def _model_file(bundle_dir: Path) -> str:
    return Manifest.read(bundle_dir).models["cpu"].file


@FUZZ
@given(data=st.data())
def test_mutated_tflite_behind_the_manifest_hash(scratch_bundle, untouched, data):
    name = _model_file(untouched)
    (scratch_bundle / name).write_bytes(data.draw(mutations((untouched / name).read_bytes())))
    with pytest.raises(EdgekitError, match="sha256|missing"):
        EdgePolicy.load(scratch_bundle, device="cpu")


# Each case loads a model that passes the hash check, so each is probed in a child process (runtime.probe):
# half the examples of the in-process families, each mutation kind counted (and required below).
REHASHED_EXAMPLES = EXAMPLES // 2
REHASHED_FAMILY = "tflite rehashed past the manifest ({kind})"
MIN_PER_KIND = 5  # derandomized: 100 examples give 8 to 54 per kind


@settings(FUZZ, max_examples=REHASHED_EXAMPLES)
@given(data=st.data())
def test_mutated_tflite_rehashed_reaches_the_interpreter_safely(scratch_bundle, untouched, data):
    """An edited model with a matching manifest: the structural check stands between it and TFLite,
    which segfaults on some such files (see edgekit.runtime.tflite_guard)."""
    name = _model_file(untouched)
    kind, mutated = data.draw(kinded_mutations((untouched / name).read_bytes()))
    (scratch_bundle / name).write_bytes(mutated)
    document = json.loads((untouched / MANIFEST_NAME).read_text())
    document["files"][name] = hashlib.sha256(mutated).hexdigest()
    (scratch_bundle / MANIFEST_NAME).write_text(json.dumps(document))
    attempt(REHASHED_FAMILY.format(kind=kind), lambda: _load_and_predict(scratch_bundle))


def test_every_mutation_kind_reached_the_interpreter():
    """The rehashed-model family above tried every kind of mutation often enough (counted in the summary)."""
    tried = {kind: TALLIES[REHASHED_FAMILY.format(kind=kind)]["tried"] for kind in MUTATION_KINDS}
    if not any(tried.values()):
        pytest.skip("test_mutated_tflite_rehashed_reaches_the_interpreter_safely did not run in this session")
    assert all(count >= MIN_PER_KIND for count in tried.values()), tried


# --- observation lines ------------------------------------------------------------------------------

NUMBERS = st.one_of(st.floats(), st.integers(-(10**400), 10**400), st.sampled_from([1e308, -1e308, 0.0, 1e-320]))
OBSERVATIONS = st.one_of(
    st.lists(NUMBERS, min_size=0, max_size=6),
    st.lists(st.lists(NUMBERS, min_size=3, max_size=3), max_size=3),
    JSON_VALUES,
)


def _as_line(value) -> str:
    return json.dumps(value, allow_nan=True)


LINES = st.one_of(
    st.text(max_size=80),
    OBSERVATIONS.map(_as_line),
    st.builds(lambda i, o: _as_line({"id": i, "obs": o}), JSON_VALUES, OBSERVATIONS),
    st.builds(lambda o: _as_line({"obs": o}), OBSERVATIONS),
    st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth),
    st.sampled_from(['{"id": 1e400, "obs": [1, 2, 3]}', "[NaN, 0, 0]", "[Infinity, 0, 0]", '{"obs": null}']),
)


@settings(max_examples=4 * EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(line=LINES, mode=st.sampled_from(["error", "hold", "zero"]))
def test_observation_lines_always_get_one_json_answer(untouched, line, mode):
    policy = _server_policy(untouched)
    guard = BadObsGuard.for_space(policy.manifest.action_space, mode, count_saturation=True)
    reply = json.loads(handle_line(policy, line, guard))
    assert isinstance(reply, dict) and ("action" in reply) != ("error" in reply)
    if "error" in reply or "substituted" in reply:
        assert guard.bad == 1 and (mode != "error") == ("substituted" in reply)


_POLICIES: dict[Path, EdgePolicy] = {}


def _server_policy(bundle_dir: Path) -> EdgePolicy:
    if bundle_dir not in _POLICIES:
        _POLICIES[bundle_dir] = EdgePolicy.load(bundle_dir, device="cpu")
    return _POLICIES[bundle_dir]


def test_zip_fuzzing_leaves_the_example_untouched():
    assert sha256_file(EXAMPLE_MODEL) == EXAMPLE_SHA256
    assert load_agent(EXAMPLE_MODEL).algorithm.name == "PPO"


# --- counts -----------------------------------------------------------------------------------------


def _report(family: str, tried: int, clean: int, crash: int = 0, hang: int = 0) -> None:
    """Print a family's counts (and append them to $EDGEKIT_FUZZ_COUNTS, for docs/security.md)."""
    line = {"family": family, "tried": tried, "clean": clean, "crash": crash, "hang": hang}
    print(f"fuzz counts: {json.dumps(line)}")
    add_counts(family, tried, clean, crash, hang)  # and in the session's summary
    target = os.environ.get("EDGEKIT_FUZZ_COUNTS")
    if target:
        with open(target, "a") as fh:
            fh.write(json.dumps(line) + "\n")


# --- hostile models: one op code swapped (issue 17 item 2) -------------------------------------------


def _swapped_bundles(src: Path, root: Path) -> dict[str, Path]:
    bundles = {f"{s}->{t}": swapped_op_bundle(src, root / f"{s}-{t}", s, t) for s in SWAP_SOURCES for t in SWAP_TARGETS}
    name = Manifest.read(src).models["cpu"].file
    bundles["no outputs"] = rehashed_bundle(src, root / "no-outputs", without_outputs((src / name).read_bytes()))
    return bundles


def _command(kind: str, bundle: Path) -> tuple[list[str], str | None]:
    return {"verify": (["verify", str(bundle), "--device", "cpu"], None),
            "bench": (["bench", str(bundle), "--device", "cpu", "--iterations", "10"], None),
            "run": (["run", str(bundle), "--device", "cpu", "--env", "Pendulum-v1", "--episodes", "1"], None),
            "serve": (["run", str(bundle), "--device", "cpu", "--serve", "stdio"], "[1.0, 0.0, 0.5]\n[0, 1, 0.2]\n"),
            }[kind]


@pytest.mark.slow
def test_swapped_op_codes_give_one_clean_error_line_in_every_command(bundle, tmp_path):
    """TANH or FULLY_CONNECTED turned into STRIDED_SLICE, SPLIT, SLICE, BATCH_MATMUL (which crashed the
    process), SQRT, RSQRT, SIGN (whose invoke raised), and a graph with no outputs; manifest re-hashed.
    Every model through `verify`; four of them through run, bench and the server too."""
    bundles = _swapped_bundles(bundle, tmp_path)
    every_command = {"TANH->SPLIT", "TANH->SQRT", "FULLY_CONNECTED->SIGN", "no outputs"}
    tried = clean = crash = hang = 0
    failures = []
    for label, path in bundles.items():
        for kind in ("verify", "run", "bench", "serve") if label in every_command else ("verify",):
            args, stdin = _command(kind, path)
            tried += 1
            try:
                proc = run_cli(*args, stdin=stdin, timeout=120)
            except subprocess.TimeoutExpired:
                hang += 1
                failures.append((label, kind, "hang"))
                continue
            errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
            if proc.returncode < 0:
                crash += 1
                failures.append((label, kind, f"signal {-proc.returncode}"))
            elif proc.returncode == 1 and len(errors) == 1 and "unexpected" not in errors[0] \
                    and "Traceback" not in proc.stderr:
                clean += 1
            else:
                failures.append((label, kind, proc.returncode, proc.stderr[-500:]))
    _report("op-code swaps through the CLI", tried, clean, crash, hang)
    assert not failures and clean == tried


_WORKER = """
import json, sys, warnings
warnings.simplefilter("ignore")
from edgekit.core.errors import EdgekitError
from edgekit.runtime import EdgePolicy
from edgekit.runtime.serve import handle_line
for path in sys.argv[1:]:
    try:
        policy = EdgePolicy.load(path, device="cpu")
        policy.predict([1.0, 0.0, 0.5])
        reply = json.loads(handle_line(policy, "[[0.1, 0.2, 0.3], [5, 5, 5]]"))
        outcome = "opened" if "action" in reply or "error" in reply else "bad reply"
    except EdgekitError:
        outcome = "refused"
    except Exception as exc:
        outcome = f"unexpected {type(exc).__name__}: {exc}"
    print(json.dumps({"path": path, "outcome": outcome}), flush=True)
"""


def _isolated(paths: list[Path], timeout: float = 60) -> dict[Path, str]:
    """Each path's outcome in a worker process: opened / refused / unexpected ..., or crash / hang (the
    worker died on it, or said nothing for ``timeout`` s; a new worker takes the rest)."""
    import select

    outcomes: dict[Path, str] = {}
    todo = list(paths)
    while todo:
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, *map(str, todo)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, cwd=REPO, text=True)
        try:
            while todo:
                ready, _, _ = select.select([proc.stdout], [], [], timeout)
                line = proc.stdout.readline() if ready else None
                if line is None:
                    outcomes[todo.pop(0)] = "hang"
                    break
                if not line:
                    proc.wait(timeout=30)
                    outcomes[todo.pop(0)] = "crash" if proc.returncode and proc.returncode < 0 else \
                        f"worker exit {proc.returncode}"
                    break
                outcomes[todo.pop(0)] = json.loads(line)["outcome"]
        finally:
            proc.kill()
            proc.wait()
    return outcomes


@pytest.mark.slow
def test_any_builtin_op_code_swapped_in_is_refused_or_runs_never_crashes(bundle, tmp_path):
    """A wider sweep of the same family: 40 builtin op codes (every 5th of 0..200, derandomized), each put in
    place of TANH and of FULLY_CONNECTED, opened in a worker process that a crash or hang would end."""
    name = Manifest.read(bundle).models["cpu"].file
    original = (bundle / name).read_bytes()
    codes = list(range(0, 201, 5))[:40]
    paths = []
    for source in SWAP_SOURCES:
        for code in codes:
            target = BuiltinOperatorName(code)
            if target is None or target == source:
                continue
            paths.append(rehashed_bundle(bundle, tmp_path / f"{source}-{target}",
                                         swap_op_code(original, source, target)))
    outcomes = _isolated(paths)
    crash = sum(v == "crash" for v in outcomes.values())
    hang = sum(v == "hang" for v in outcomes.values())
    clean = sum(v in ("opened", "refused") for v in outcomes.values())
    refused = sum(v == "refused" for v in outcomes.values())
    _report(f"op-code sweep (every 5th builtin, on TANH and FULLY_CONNECTED; {refused} refused, {clean - refused} "
            "opened and answered)", len(paths), clean, crash, hang)
    assert clean == len(paths), {str(k): v for k, v in outcomes.items() if v not in ("opened", "refused")}


def BuiltinOperatorName(code: int) -> str | None:  # noqa: N802 (mirrors the schema's enum)
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    names = [k for k, v in vars(BuiltinOperator).items() if not k.startswith("_") and v == code]
    return names[0] if names else None


# --- framing (issue 17 item 5) ------------------------------------------------------------------------

LIMIT = 64  # a small line limit, so that over-long lines are frequent
FRAME_LINES = st.lists(st.one_of(
    st.binary(max_size=90).map(lambda b: b.replace(b"\n", b" ")),  # anything but a newline, \r included
    st.sampled_from([b"", b"\r", b"[1,\r 2, 3]", b" " * (LIMIT + 1), b"x" * LIMIT, b"[" * 200]),
), max_size=12)


@settings(max_examples=4 * EXAMPLES, derandomize=True, deadline=None, database=None)
@given(lines=FRAME_LINES, cuts=st.lists(st.integers(1, 40), max_size=30), final_newline=st.booleans())
def test_framing_yields_each_line_once_in_order_whatever_the_chunks(lines, cuts, final_newline):
    """Lines of any bytes (\\r included), over-long or not, arriving in any pieces: the framer returns each
    line once, in order, over-long ones as one TOO_LONG, and never holds more than the limit."""
    stream = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    framer, out, at = LineFramer(LIMIT), [], 0
    for cut in [*cuts, len(stream)]:
        out += framer.feed(stream[at:at + cut])
        assert framer.pending <= LIMIT
        at += cut
        if at >= len(stream):
            break
    tail = framer.finish()
    if tail is not None:
        out.append(tail)
    complete = lines if final_newline or not lines else lines[:-1]
    expected = [TOO_LONG if len(line) > LIMIT else line for line in complete]
    if lines and not final_newline and lines[-1]:  # the last line, unterminated: answered at the end unless too long
        expected.append(None if len(lines[-1]) > LIMIT else lines[-1])
    assert out == expected
    _FRAMING_TRIED.append(1)


_FRAMING_TRIED: list[int] = []


def test_framing_counts():
    if _FRAMING_TRIED:
        _report("framing: chunked streams into LineFramer", len(_FRAMING_TRIED), len(_FRAMING_TRIED))


def _stream_lines(rng: np.random.Generator, count: int) -> list[bytes]:
    """A mix of requests with ids (valid and not), bare \\r inside, blank lines and over-long lines."""
    lines = []
    for i in range(count):
        kind = rng.integers(6)
        if kind == 0:
            lines.append(json.dumps({"id": i, "obs": rng.normal(size=3).tolist()}).encode())
        elif kind == 1:
            lines.append(b'{"id": %d,\r "obs": [1.0,\r 0.0, 0.5]}' % i)
        elif kind == 2:
            lines.append(b'{"id": %d, "obs": [1.0, "x"]}' % i)
        elif kind == 3:
            lines.append(b" " * int(rng.integers(MAX_LINE_BYTES + 1, MAX_LINE_BYTES + 5000)) + b'{"id": "smuggled"}')
        elif kind == 4:
            noise = rng.integers(0, 256, size=int(rng.integers(1, 60)), dtype=np.uint8)
            lines.append(bytes(noise).replace(b"\n", b"_"))
        else:
            lines.append(b"   ")  # blank: no reply
    return lines


def _expected_ids(lines: list[bytes]) -> list:
    """What each reply's id must be (None: an error without id), one per non-blank line."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            out.append(None)
            continue
        try:
            request = json.loads(line)
        except ValueError:
            out.append(None)
            continue
        out.append(request.get("id") if isinstance(request, dict) and not isinstance(request.get("id"), bool)
                   and isinstance(request.get("id"), (int, str)) else None)
    return out


@pytest.mark.slow
def test_stdio_stream_of_hostile_lines_in_random_pieces_gets_one_reply_per_line(bundle):
    rng = np.random.default_rng(11)
    lines = _stream_lines(rng, 400)
    stream = b"\n".join(lines) + b"\n"
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "run", str(bundle), "--device", "cpu", "--serve",
                             "stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    replies: list[bytes] = []
    reader = threading.Thread(target=lambda: replies.extend(proc.stdout.read().splitlines()), daemon=True)
    reader.start()
    at = 0
    while at < len(stream):  # pieces of 1 byte to 64 KiB
        piece = int(rng.choice([1, 7, 100, 4096, 65536]))
        proc.stdin.write(stream[at:at + piece])
        proc.stdin.flush()
        at += piece
    proc.stdin.close()
    try:
        crashed = proc.wait(timeout=300) < 0
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        crashed, hung = False, True
    reader.join(30)
    got = [json.loads(r).get("id") for r in replies]
    expected = _expected_ids(lines)
    _report("framing: hostile stdio stream in random pieces (lines)", len(expected),
            sum(g == e for g, e in zip(got, expected)), int(crashed), int(hung))
    assert not crashed and not hung and got == expected


@pytest.mark.slow
def test_many_tcp_clients_with_hostile_lines_each_get_their_replies_in_order(bundle):
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "run", str(bundle), "--device", "cpu", "--serve",
                             "tcp:127.0.0.1:0"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=REPO, text=True)
    port = None
    while port is None:
        line = proc.stderr.readline()
        if line.startswith("listening on tcp:"):
            port = int(line.strip().rsplit(":", 1)[1])
        elif not line:
            raise AssertionError("the server did not start")
    results: dict[int, tuple[list, list]] = {}

    def client(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        lines = _stream_lines(rng, 40)
        stream = b"\n".join(lines) + b"\n"
        expected = _expected_ids(lines)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            at = 0
            while at < len(stream):
                piece = int(rng.choice([1, 13, 4096, 65536]))
                sock.sendall(stream[at:at + piece])
                at += piece
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        results[k] = ([json.loads(r).get("id") for r in data.splitlines()], expected)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    tried = sum(len(expected) for _, expected in results.values())
    clean = sum(sum(g == e for g, e in zip(got, expected)) for got, expected in results.values())
    _report("framing: 16 TCP clients, hostile lines in random pieces (lines)", tried, clean, int(not alive))
    assert alive and len(results) == 16 and all(got == expected for got, expected in results.values())
