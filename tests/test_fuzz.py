"""Fuzzing every input edgekit reads: only edgekit's own errors come out, nothing crashes.

Hypothesis mutates real inputs — a model zip (raw bytes, and the members and
pickles inside it with valid checksums), a bundle's manifest (bytes and JSON
values), its .tflite model (behind the sha256 check and, re-hashed, straight
to the interpreter), and the server's observation lines. Each test feeds at
least 200 malformed inputs through the library functions, derandomized so
that CI runs the same inputs every time, and checks afterwards that the
valid bundle it copied from is byte for byte unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE_MODEL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.bundle import MANIFEST_NAME, Manifest
from edgekit.bundle.files import sha256_file
from edgekit.errors import EdgekitError
from edgekit.loading import load_agent
from edgekit.runtime import EdgePolicy
from edgekit.runtime.bad_obs import BadObsGuard
from edgekit.runtime.serve import handle_line

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
    return bytes(data)


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


@FUZZ
@given(data=st.data())
def test_mutated_tflite_rehashed_reaches_the_interpreter_safely(scratch_bundle, untouched, data):
    """An edited model with a matching manifest: the structural check stands between it and TFLite,
    which segfaults on some such files (see edgekit.runtime.tflite_guard)."""
    name = _model_file(untouched)
    mutated = data.draw(mutations((untouched / name).read_bytes()))
    (scratch_bundle / name).write_bytes(mutated)
    document = json.loads((untouched / MANIFEST_NAME).read_text())
    document["files"][name] = hashlib.sha256(mutated).hexdigest()
    (scratch_bundle / MANIFEST_NAME).write_text(json.dumps(document))
    _expect_edgekit_errors_only(lambda: _load_and_predict(scratch_bundle))


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
