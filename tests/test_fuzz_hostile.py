"""Fuzz families of issue 17 that this file owns: bound values, allocation gadgets, aliases.

Each case is counted by ``fuzz_tally`` (tried, clean error, accepted, crash,
hang; printed at the end of the session). A case passes when edgekit either
accepts the input and then behaves (finite actions, bounded memory and time)
or refuses it with its own one-line error. Derandomized: the same inputs on
every run. The signals family is in tests/test_signals.py.
"""

from __future__ import annotations

import copy
import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from fuzz_tally import attempt
from hostile_pickles import (
    F8,
    MARK,
    NDARRAY,
    blob,
    build,
    call,
    dict_of,
    floating,
    name,
    new,
    new_ex,
    number,
    obj,
    text,
    tuple_of,
    whole,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.bundle import MANIFEST_NAME, Manifest
from edgekit.core.errors import EdgekitError
from edgekit.core.postprocess import PostProcessor
from edgekit.host.loading.pickle_rules import RULES
from edgekit.host.loading.restricted_unpickle import restricted_loads
from edgekit.host.loading.zoo_config import read_env_kwargs, read_zoo_config
from edgekit.runtime import EdgePolicy

EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")

# --- bound values ------------------------------------------------------------------------------------

BOUNDS = st.one_of(
    st.floats(),  # NaN, infinities, subnormals, float64 giants
    st.sampled_from([3.4028234663852886e38, 3.5e38, -3.5e38, 1e308, -1e308, 1e-320, 0.0, -0.0, 2.0, -2.0, 255.0]),
    st.integers(-(10**40), 10**40),
    st.sampled_from(["inf", "-inf", "nan", "Infinity", "1.0", True, False, None, [], {}]),
)
DTYPES = st.sampled_from([None, None, None, "float16", "float64", "int8", "uint8", "int64", "bool"])


@pytest.fixture(scope="module")
def bound_bundles(built_bundle, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Scratch copies of a bundle that unscales its actions (SAC) and of one that clips them (PPO, its
    manifest switched to a plain clip, as --no-output-range builds)."""
    out = {}
    for kind, case in (("unscale", "sac-pendulum"), ("clip", "ppo-pendulum")):
        target = tmp_path_factory.mktemp(f"bounds-{kind}") / "bundle"
        shutil.copytree(built_bundle(case).bundle_dir, target)
        document = json.loads((target / MANIFEST_NAME).read_text())
        if kind == "clip":
            document["output"], document["postprocess"] = "actions", "clip"
        out[kind] = (target, document)
    return out


def _behaves(bundle: Path, document: dict) -> None:
    """Accepted bounds must give finite actions inside them, that the server can encode as JSON."""
    manifest = Manifest.from_dict(document)
    space = manifest.action_space
    post = PostProcessor(manifest.postprocess, space)
    outputs = np.array([[-1e30], [-1.5], [-1.0], [0.0], [0.3], [1.0], [1.5], [1e30]], dtype=np.float32)
    actions = post(np.repeat(outputs, space.size, axis=1))
    assert np.isfinite(actions).all(), actions
    json.dumps(actions.tolist(), allow_nan=False)
    low, high = space.low_array().reshape(-1), space.high_array().reshape(-1)
    assert np.all(actions.reshape(len(outputs), -1) >= low) and np.all(actions.reshape(len(outputs), -1) <= high)
    (bundle / MANIFEST_NAME).write_text(json.dumps(document, allow_nan=True))
    policy = EdgePolicy.load(bundle, device="cpu")
    obs_space = policy.manifest.observation_space
    obs = np.clip(np.zeros(obs_space.shape, dtype=np.float32), obs_space.low_array(), obs_space.high_array())
    obs = np.nan_to_num(obs, posinf=0.0, neginf=0.0)
    action = policy.predict(obs)
    assert np.isfinite(action).all(), action


@FUZZ
@given(data=st.data())
def test_bound_values(bound_bundles, data):
    kind = data.draw(st.sampled_from(sorted(bound_bundles)))
    bundle, original = bound_bundles[kind]
    document = copy.deepcopy(original)
    where = data.draw(st.sampled_from(["action_space", "observation_space"]))
    space = document[where]
    size = len(space["low"])
    for side in data.draw(st.sampled_from([("low",), ("high",), ("low", "high")])):
        values = data.draw(st.lists(BOUNDS, min_size=size, max_size=size) | st.lists(BOUNDS, max_size=size + 1)
                           | BOUNDS)
        space[side] = values
    dtype = data.draw(DTYPES)
    if dtype is not None:
        space["dtype"] = dtype
    attempt("bound values", lambda: _behaves(bundle, document))


# --- allocation gadgets -----------------------------------------------------------------------------

IMPOSSIBLE = 2**42
OUTSIDE = [("builtins", "getattr"), ("os", "system"), ("numpy", "frombuffer"), ("numpy", "empty"), ("torch", "empty"),
           ("torch", "zeros"), ("functools", "partial"), ("copyreg", "_reconstructor"), ("numpy", "ones")]
NAMES = st.sampled_from(sorted(RULES) + OUTSIDE).map(lambda pair: name(*pair))
ATOMS = st.sampled_from([
    number(2**31 - 1), number(IMPOSSIBLE), number(2**62), number(-1), number(0), number(3), floating(1e308),
    text("f8"), text("V99999999"), text("O8"), text("U99999999"), text("cpu"), text("cuda"), text("latin-1"),
    text("MT19937"), blob(b"b"), blob(bytes(8)), b"N", b"\x88", b"]", b"}", b")",
    tuple_of(number(IMPOSSIBLE)), tuple_of(number(0)), tuple_of(number(2**21), number(2**21)), F8, NDARRAY,
])
OPERATIONS = ("call", "new", "new_ex", "obj", "build", "setitems", "appends", "name")


@st.composite
def gadget(draw: st.DrawFn, depth: int = 2) -> bytes:
    """One operation on a name from the table (or just outside it), with atoms or smaller gadgets."""
    part = ATOMS if depth == 0 else st.one_of(ATOMS, gadget(depth - 1))
    callee = draw(NAMES)
    args = draw(st.lists(part, max_size=4))
    operation = draw(st.sampled_from(OPERATIONS))
    if operation == "call":
        return call(callee, *args)
    if operation == "new":
        return new(callee, *args)
    if operation == "new_ex":
        return new_ex(callee, *args)
    if operation == "obj":
        return obj(callee, *args)
    if operation == "build":
        return build(new(callee), draw(st.one_of(part, st.just(dict_of(n=number(IMPOSSIBLE))))))
    if operation == "setitems":
        return callee + MARK + b"".join(args[:2] * 2) + b"u"
    if operation == "appends":
        return callee + MARK + b"".join(args) + b"e"
    return callee


def _decoded_within_bounds(payload: bytes) -> None:
    """Decode under tracemalloc: refused by a rule (never by a failed allocation), or built small."""
    tracemalloc.start()
    try:
        restricted_loads(payload, "model.zip's policy_kwargs")
    except EdgekitError as exc:
        assert "MemoryError" not in str(exc) and "allocate" not in str(exc), str(exc)
        raise
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated"


@FUZZ
@given(payload=gadget())
def test_allocation_gadgets(payload):
    attempt("allocation gadgets", lambda: _decoded_within_bounds(whole(payload)), seconds=10)


# --- aliases ----------------------------------------------------------------------------------------

TAGS = st.sampled_from(["", "", "", "!!python/object/apply:os.system ", "!!binary ", "!!set ", "!!omap ",
                        "!!python/object/apply:collections.OrderedDict ", "!!str ", "!!int ", "!custom "])


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    """Anchors nested ``levels`` deep with ``fan_out`` aliases each, as lists, mappings or merge keys;
    sometimes a recursive or unknown alias, a tag, or a document marker."""
    levels, fan_out = draw(st.integers(1, 9)), draw(st.integers(1, 40))
    form = draw(st.sampled_from(["flow", "block", "mapping", "merge"]))
    lines = [f"a0: &a0 {draw(TAGS)}[" + ", ".join(['"v"'] * fan_out) + "]"]
    for level in range(1, levels):
        refs = [f"*a{level - 1}"] * fan_out
        if form == "flow":
            lines.append(f"a{level}: &a{level} [" + ", ".join(refs) + "]")
        elif form == "block":
            lines.append(f"a{level}: &a{level}\n" + "".join(f"  - {r}\n" for r in refs).rstrip("\n"))
        elif form == "mapping":
            lines.append(f"a{level}: &a{level} {{" + ", ".join(f"k{i}: {r}" for i, r in enumerate(refs)) + "}")
        else:
            lines.append(f"a{level}: &a{level} {{<<: *m, k: [" + ", ".join(refs) + "]}")
    if form == "merge":
        lines.insert(0, "m: &m {x: 1, y: 2}")
    extra = draw(st.sampled_from(["", "", "loop: &loop [1, *loop]", "bad: *nowhere", "---\nsecond: 1",
                                  "deep: " + "[" * 3000 + "]" * 3000]))
    return "\n".join([*lines, extra]) + "\n"


@FUZZ
@given(document=yaml_documents(), reader=st.sampled_from([read_env_kwargs, read_zoo_config]))
def test_aliases(tmp_path_factory, document, reader):
    path = tmp_path_factory.mktemp("yaml", numbered=True) / "env_kwargs.yml"
    path.write_text(document)

    def read_and_use() -> None:
        value = reader(path)
        json.dumps(value, default=str)  # what the build does with it next: walk every value

    attempt("aliases", read_and_use, seconds=5)
