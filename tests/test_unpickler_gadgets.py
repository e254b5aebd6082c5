"""Memory bombs through the restricted unpickler (issue 17, item 6), and the harmless objects published
zips carry (issue 15): the unpickler calls no constructor with a size it did not bound, allows no
callable that calls another, and still reads what SB3 and rl-zoo3 write."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_MODEL, REPO
from gymnasium import spaces
from hostile_pickles import BYTEARRAY, GENERATOR_CTOR, PRELU, call, gadgets, number, whole, with_field

from edgekit.core.errors import EdgekitError, UnsafePickleError
from edgekit.host.loading import load_agent
from edgekit.host.loading.pickle_rules import RULES, Call, Reference, Restore
from edgekit.host.loading.restricted_unpickle import restricted_loads
from edgekit.host.loading.vecnormalize import load_vecnormalize

IMPOSSIBLE = 2**42  # bytes no machine here has: a gadget that tried would fail with MemoryError, not a refusal
GADGETS = gadgets(IMPOSSIBLE)
FIELDS = ("observation_space", "action_space", "policy_kwargs", "policy_class")


def _refused_not_allocated(error: BaseException) -> None:
    """The refusal came from a rule, before any allocation was tried."""
    text = str(error)
    assert isinstance(error, EdgekitError), repr(error)
    assert "MemoryError" not in text and "allocate" not in text, text


@pytest.mark.parametrize("label", sorted(GADGETS))
def test_each_gadget_is_refused_before_it_allocates(label):
    with pytest.raises(EdgekitError) as caught:
        restricted_loads(GADGETS[label], "model.zip's policy_kwargs")
    _refused_not_allocated(caught.value)


@pytest.mark.parametrize("field", FIELDS)
def test_gadgets_in_every_decoded_field_of_a_model(tmp_path, field):
    for label, payload in GADGETS.items():
        model = with_field(EXAMPLE_MODEL, tmp_path / "model.zip", field, payload)
        with pytest.raises(EdgekitError) as caught:
            load_agent(model)
        _refused_not_allocated(caught.value)
        assert label and field in str(caught.value)


def test_gadgets_in_vecnormalize_statistics(tmp_path):
    path = tmp_path / "vecnormalize.pkl"
    for payload in GADGETS.values():
        path.write_bytes(payload)
        with pytest.raises(EdgekitError) as caught:
            load_vecnormalize(path, 3)
        _refused_not_allocated(caught.value)


# The issue's payloads at their real sizes: 1.5 GB and 1.2 GB before the fix.
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child of a
# test session that has grown to 1.7 GB reports 1.7 GB before it has done anything.
_MEASURED = ("import re, sys\nfrom edgekit.cli import main\ncode = main(sys.argv[1:])\n"
             "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
             "print(f'maxrss_kb={hwm}', file=sys.stderr)\n"
             "sys.exit(code)\n")


def _edgekit_measured(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EDGEKIT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=REPO)
    rss = [int(line.split("=")[1]) for line in proc.stderr.splitlines() if line.startswith("maxrss_kb=")]
    return proc, rss[0] * 1024 if rss else -1


@pytest.mark.slow
def test_the_issues_payloads_allocate_nothing(tmp_path):
    """bytearray(1.5e9) in the observation space (46 bytes), PReLU(3e8) through numpy's helper in the
    VecNormalize statistics (105 bytes): one-line errors, and the process never grows by gigabytes."""
    bytearray_bomb = whole(call(BYTEARRAY, number(1_500_000_000)))
    prelu_bomb = whole(call(GENERATOR_CTOR, number(300_000_000), PRELU))
    model = with_field(EXAMPLE_MODEL, tmp_path / "model.zip", "observation_space", bytearray_bomb)
    stats = tmp_path / "vecnormalize.pkl"
    stats.write_bytes(prelu_bomb)
    baseline, base_rss = _edgekit_measured("build", str(tmp_path / "missing.zip"), "--env", "Pendulum-v1")
    assert baseline.returncode != 0 and base_rss > 0
    for args, needle in (((str(model),), "bytes may only be built from bytes"),
                         ((str(EXAMPLE_MODEL), "--vecnormalize", str(stats)), "random generator")):
        proc, rss = _edgekit_measured("build", *args, "--env", "Pendulum-v1", "-o", str(tmp_path / "b"))
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and len(errors) == 1 and needle in errors[0], proc.stderr
        assert rss - base_rss < 300 * 2**20, f"{rss / 2**20:.0f} MiB against {base_rss / 2**20:.0f} MiB"
        assert rss < 1.4e9


# --- what published zips carry still loads ---------------------------------------------------------------


def test_every_rule_names_a_real_object():
    for (module, name), rule in RULES.items():
        assert isinstance(rule, (Reference, Call, Restore))
        assert rule.load() is not None, f"{module}.{name}"


def test_harmless_torch_objects_in_policy_kwargs_load(tmp_path):
    """A device, dtypes, every activation and optimizer class: named or (the device) built from a name."""
    kwargs = {"device": torch.device("cpu"), "cuda": torch.device("cuda", 0), "dtypes": [torch.float32, torch.int64],
              "activations": [getattr(torch.nn, n) for n in ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU")],
              "optimizers": [torch.optim.Adam, torch.optim.RMSprop, torch.optim.SGD], "numpy": [np.float32, np.int64],
              "scalar": np.float32(1.5), "array": np.arange(6, dtype=np.float64).reshape(2, 3)}
    for protocol in (2, 4, 5):
        decoded = restricted_loads(pickle.dumps(kwargs, protocol=protocol), "policy_kwargs")
        assert decoded["device"] == torch.device("cpu") and decoded["cuda"] == torch.device("cuda", 0)
        assert decoded["dtypes"] == kwargs["dtypes"] and decoded["optimizers"] == kwargs["optimizers"]
        np.testing.assert_array_equal(decoded["array"], kwargs["array"])


def test_a_model_with_a_device_and_an_optimizer_in_policy_kwargs_loads(tmp_path):
    import cloudpickle
    from hostile_pickles import serialized

    kwargs = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh,
              "optimizer_class": torch.optim.RMSprop, "optimizer_kwargs": {"alpha": 0.99, "eps": 1e-5},
              "device": torch.device("cpu")}
    model = with_field(EXAMPLE_MODEL, tmp_path / "model.zip", "policy_kwargs", cloudpickle.dumps(kwargs))
    reference = load_agent(EXAMPLE_MODEL)
    agent = load_agent(model)
    obs = np.zeros((1, 3), dtype=np.float32)
    assert agent.model.predict(obs)[0].shape == reference.model.predict(obs)[0].shape
    assert serialized(b"x")[":serialized:"] == "eA=="


def test_random_generators_of_spaces_still_load():
    box = spaces.Box(-1.0, 1.0, (3,), seed=7)
    box.sample()
    legacy = np.random.RandomState(3)
    for value in (box, legacy, np.random.default_rng(1), spaces.Discrete(4, seed=2)):
        decoded = restricted_loads(pickle.dumps(value, protocol=4), "space")
        assert type(decoded) is type(value)


def test_a_class_named_only_is_never_called_or_created():
    with pytest.raises(UnsafePickleError, match="name but not call"):
        restricted_loads(whole(call(PRELU)), "policy_kwargs")


def test_the_agents_in_test_data_all_decode():
    """scripts/scan_pickles.py on the published agents kept as test data: every pickle edgekit reads."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "scan_pickles.py"), str(REPO / "tests" / "data"),
                           "--globals"], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 refusals" in proc.stdout
    assert "gym.spaces.box.Box" in proc.stdout


def test_policy_kwargs_that_size_the_network_past_its_weights(tmp_path):
    """n_quantiles=10**7 in a QR-DQN's policy_kwargs made edgekit fill a 1.3 GB layer (with net_arch [64, 64]:
    10 GB in 100 s): refused when that layer is registered, before its memory is touched. (10**9 asks more
    than the machine has: the allocation fails at once, untouched.)"""
    import cloudpickle
    from sb3_contrib import QRDQN

    path = tmp_path / "qrdqn.zip"
    QRDQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [16], "n_quantiles": 5}, buffer_size=10,
          learning_starts=0, device="cpu").save(path)
    for quantiles, needle in ((10**7, "larger network than policy.pth holds"), (10**9, None)):
        bomb = with_field(path, tmp_path / "bomb.zip", "policy_kwargs",
                          cloudpickle.dumps({"net_arch": [16], "n_quantiles": quantiles}))
        with pytest.raises(EdgekitError, match=needle):
            load_agent(bomb)
    assert load_agent(path).algorithm.name == "QRDQN"
