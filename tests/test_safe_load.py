"""The restricted loader: same policy as SB3's own load, and no pickled code runs."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import AGENT_CASES, EXAMPLE_MODEL, REPO, run_cli, run_cli_batch

from edgekit.core.errors import ModelFileError, UnsafePickleError
from edgekit.host.loading import load_agent

LEGACY = REPO / "tests" / "data" / "rl-zoo-agents"
LEGACY_AGENTS = [
    ("ppo/CartPole-v1_1/CartPole-v1.zip", "CartPole-v1"),
    ("a2c/Acrobot-v1_1/Acrobot-v1.zip", "Acrobot-v1"),
    ("sac/MountainCarContinuous-v0_1/MountainCarContinuous-v0.zip", "MountainCarContinuous-v0"),
]


def _random_observations(space, n: int = 200):
    """Random observations of any supported space (a dict of batches for a Dict)."""
    from gymnasium import spaces

    if not isinstance(space, spaces.Box):
        from edgekit.core.observations import ObservationEncoder
        from edgekit.host.gym_envs import space_spec

        return ObservationEncoder(space_spec(space, "observation")).sample(np.random.default_rng(0), n)
    low = np.clip(np.asarray(space.low, dtype=np.float64), -10, 10)
    high = np.clip(np.asarray(space.high, dtype=np.float64), -10, 10)
    return np.random.default_rng(0).uniform(low, high, size=(n, *space.shape)).astype(np.float32)


def _assert_same_policy(restricted, reference, space) -> None:
    import torch

    mine, theirs = restricted.state_dict(), reference.state_dict()
    assert list(mine) == list(theirs)
    for key in mine:
        assert mine[key].dtype == theirs[key].dtype and torch.equal(mine[key], theirs[key]), key
    obs = _random_observations(space)
    np.testing.assert_array_equal(restricted.predict(obs, deterministic=True)[0],
                                  reference.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("name", sorted(AGENT_CASES))
def test_restricted_load_equals_sb3_load(trained_model, name):
    path = trained_model(name)
    agent = load_agent(path)
    trusted = load_agent(path, trust_pickle=True)
    assert type(agent.model.policy) is type(trusted.model.policy)
    assert agent.observation_space == trusted.observation_space and agent.action_space == trusted.action_space
    assert (agent.algorithm, agent.policy_class, agent.sb3_version) == \
        (trusted.algorithm, trusted.policy_class, trusted.sb3_version)
    _assert_same_policy(agent.model.policy, trusted.model.policy, trusted.model.observation_space)
    obs = _random_observations(trusted.model.observation_space)
    np.testing.assert_array_equal(agent.model.predict(obs)[0], trusted.model.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize(("relative", "env_id"), LEGACY_AGENTS)
def test_zips_saved_under_gym_load_without_gym(relative, env_id):
    """SB3 1.x zips pickled gym.spaces: read as gymnasium's, equal to SB3 given the env's spaces."""
    import gymnasium
    import stable_baselines3

    path = LEGACY / relative
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    agent = load_agent(path)
    env = gymnasium.make(env_id)
    never = lambda _progress: 0.0  # noqa: E731
    reference = getattr(stable_baselines3, agent.algorithm.name).load(
        path, device="cpu", custom_objects={"observation_space": env.observation_space,
                                            "action_space": env.action_space, "lr_schedule": never,
                                            "learning_rate": 0.0, "clip_range": never})
    _assert_same_policy(agent.model.policy, reference.policy, env.observation_space)
    assert "gym" not in sys.modules


# --- hostile pickles -----------------------------------------------------------------------------


class _System:
    """Unpickling this runs a shell command (what a hostile model file would do)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Open:
    """Unpickling this creates a file through builtins.open."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _rewrite(src: Path, dst: Path, members: dict[str, bytes | None] | None = None,
             data_fields: dict[str, object] | None = None) -> Path:
    """Copy a model zip, replacing (or, with None, dropping) members and fields of its data JSON."""
    members = dict(members or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            payload = members.pop(item.filename, zin.read(item))
            if item.filename == "data" and data_fields:
                data = json.loads(payload)
                for key, value in data_fields.items():  # keep the readable keys beside ":serialized:"
                    old = data.get(key)
                    data[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
                payload = json.dumps(data).encode()
            if payload is not None:
                zout.writestr(item, payload)
        for name, payload in members.items():
            if payload is not None:
                zout.writestr(name, payload)
    return dst


def _pickled(obj: object) -> dict[str, str]:
    import cloudpickle

    return _serialized(cloudpickle.dumps(obj))


def _serialized(raw: bytes) -> dict[str, str]:
    return {":type:": "<class 'object'>", ":serialized:": base64.b64encode(raw).decode()}


def _hostile(kind: str, marker: Path) -> tuple[dict[str, str], str]:
    """A pickled field that creates ``marker`` when unpickled, and the global it names."""
    if kind == "system":
        return _pickled(_System(f"touch {marker}")), "posix.system"
    if kind == "open":
        return _pickled(_Open(marker)), "io.open"
    # hand-written protocol 0: builtins.eval("open(marker, 'w')")
    return _serialized(f"cbuiltins\neval\n(V__import__('builtins').open({str(marker)!r}, 'w')\ntR.".encode()), \
        "builtins.eval"


@pytest.mark.parametrize("field", ["observation_space", "action_space", "policy_kwargs", "policy_class"])
@pytest.mark.parametrize("kind", ["system", "open", "eval"])
def test_code_in_a_pickled_field_is_refused_and_never_runs(tmp_path, field, kind):
    marker = tmp_path / "marker"
    payload, name = _hostile(kind, marker)
    bad = _rewrite(EXAMPLE_MODEL, tmp_path / "model.zip", data_fields={field: payload})
    with pytest.raises(UnsafePickleError) as caught:
        load_agent(bad)
    assert "--trust-pickle" in caught.value.hint
    if field != "policy_class":  # policy_class is refused before any name is looked up
        assert name in caught.value.message
    assert not marker.exists()


def test_the_hostile_pickle_is_live_with_trust_pickle(tmp_path):
    """Proof that the refused payloads are real: SB3's own loader runs them."""
    for kind in ("open", "eval"):
        marker = tmp_path / f"marker-{kind}"
        payload, _ = _hostile(kind, marker)
        bad = _rewrite(EXAMPLE_MODEL, tmp_path / "model.zip", data_fields={"observation_space": payload})
        with pytest.raises(ModelFileError):  # SB3 cannot use a file object as a space, but the code ran
            load_agent(bad, trust_pickle=True)
        assert marker.exists()


def test_fields_inference_does_not_need_are_never_decoded(tmp_path):
    marker = tmp_path / "marker"
    bad = _rewrite(EXAMPLE_MODEL, tmp_path / "model.zip",
                   data_fields={"lr_schedule": _pickled(_Open(marker)), "ep_info_buffer": _pickled(_Open(marker))})
    assert load_agent(bad).algorithm.name == "PPO"
    assert not marker.exists()


def test_code_in_policy_pth_is_refused(tmp_path):
    import torch

    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    torch.save({"hostile": _Open(marker)}, buffer)
    bad = _rewrite(EXAMPLE_MODEL, tmp_path / "model.zip", members={"policy.pth": buffer.getvalue()})
    with pytest.raises(ModelFileError, match="policy.pth"):
        load_agent(bad)
    assert not marker.exists()


# --- damaged files, through the command line -----------------------------------------------------


def _assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def _with_declared_size(src: Path, dst: Path, member: str, size: int) -> Path:
    """Copy a zip, lying about one member's uncompressed size in the central directory."""
    raw = bytearray(src.read_bytes())
    name = member.encode()
    at = raw.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46:at + 46 + name_length] == name:
            struct.pack_into("<I", raw, at + 24, size)
        at = raw.find(b"PK\x01\x02", at + 4)
    dst.write_bytes(bytes(raw))
    return dst


def _wrong_shapes(tmp_path: Path) -> Path:
    import torch

    with zipfile.ZipFile(EXAMPLE_MODEL) as z:
        params = torch.load(io.BytesIO(z.read("policy.pth")), weights_only=True)
    key = next(k for k in params if k.endswith("weight"))
    params[key] = torch.zeros(params[key].shape[0] + 1, params[key].shape[1])
    buffer = io.BytesIO()
    torch.save(params, buffer)
    return _rewrite(EXAMPLE_MODEL, tmp_path / "model.zip", members={"policy.pth": buffer.getvalue()})


def _zip_bomb(tmp_path: Path) -> Path:
    dst = tmp_path / "model.zip"
    with zipfile.ZipFile(EXAMPLE_MODEL) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, bytes(8 << 20) if item.filename == "policy.pth" else zin.read(item))
    return dst


def _truncated(tmp_path: Path) -> Path:
    dst = tmp_path / "model.zip"
    dst.write_bytes(EXAMPLE_MODEL.read_bytes()[: EXAMPLE_MODEL.stat().st_size * 2 // 3])
    return dst


DAMAGED = {
    # zipfile may find the end record of a .pth zip inside the truncated part: "a zip but not an SB3 model"
    "truncated": (_truncated, "not a zip|not an SB3 model|damaged"),
    "no policy.pth": (lambda d: _rewrite(EXAMPLE_MODEL, d / "model.zip", members={"policy.pth": None}),
                      "not an SB3 model"),
    "wrong tensor shapes": (_wrong_shapes, "has shape"),
    "oversize member": (lambda d: _with_declared_size(EXAMPLE_MODEL, d / "model.zip", "policy.pth", 3 << 30),
                        "too large"),
    "zip bomb": (_zip_bomb, "zip bomb"),
    "hostile pickle": (lambda d: _rewrite(EXAMPLE_MODEL, d / "model.zip",
                                          data_fields={"action_space": _pickled(_System("true"))}),
                       "posix.system"),
}


@pytest.fixture(scope="module")
def damaged_builds(tmp_path_factory) -> dict[str, tuple[Path, Path, subprocess.CompletedProcess[str]]]:
    """case -> (its folder, its damaged model, `edgekit build` of it): the builds run in one interpreter."""
    folders = {case: tmp_path_factory.mktemp(f"damaged-{i}") for i, case in enumerate(sorted(DAMAGED))}
    models = {case: DAMAGED[case][0](folder) for case, folder in folders.items()}
    procs = run_cli_batch([("build", str(models[case]), "--env", "Pendulum-v1", "-o", str(folder / "b"))
                           for case, folder in folders.items()])
    return {case: (folders[case], models[case], proc) for case, proc in zip(folders, procs)}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_model_files_are_one_line_errors(damaged_builds, case):
    folder, model, proc = damaged_builds[case]
    needle = DAMAGED[case][1]
    with pytest.raises(ModelFileError, match=needle):
        load_agent(model)
    _assert_one_line_error(proc)
    assert re.search(needle, proc.stderr), proc.stderr
    assert not (folder / "b").exists()
    if case == "hostile pickle":
        assert "--trust-pickle" in proc.stderr


def test_policy_kwargs_larger_than_the_weights_are_refused_before_allocating(tmp_path):
    bad = _rewrite(EXAMPLE_MODEL, tmp_path / "model.zip", data_fields={"policy_kwargs": {"net_arch": [64, 10**7]}})
    with pytest.raises(ModelFileError, match="larger network than policy.pth holds"):
        load_agent(bad)


def test_build_passes_trust_pickle_to_the_loader(tmp_path, monkeypatch):
    import edgekit.host.loading
    from edgekit.pipeline import BuildOptions, build

    seen = []

    def fake_load_agent(path, trust_pickle=False):
        seen.append(trust_pickle)
        raise ModelFileError("stop here")

    monkeypatch.setattr(edgekit.host.loading, "load_agent", fake_load_agent)
    for trust in (False, True):
        with pytest.raises(ModelFileError, match="stop here"):
            build(BuildOptions(model=EXAMPLE_MODEL, env_id="Pendulum-v1", output=tmp_path / "b", trust_pickle=trust))
    assert seen == [False, True] and not (tmp_path / "b").exists()
    assert "--trust-pickle" in run_cli("build", "--help").stdout


class _Calls:
    """Unpickling this calls ``func(*args)``."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_allowed_classes_are_rebuilt_from_state_not_called(tmp_path):
    """A space may be named, but a pickle may not call Box(0, 1, (10**9,)) to allocate gigabytes."""
    from gymnasium.spaces import Box

    bad = _rewrite(EXAMPLE_MODEL, tmp_path / "model.zip",
                   data_fields={"observation_space": _pickled(_Calls(Box, (0.0, 1.0, (10**9,))))})
    with pytest.raises(UnsafePickleError, match="lets a pickle name but not call"):
        load_agent(bad)
