"""Zips saved by older stable-baselines3 releases (1.5 to 2.4, under gym and gymnasium) load and deploy.

Test data: tests/data/sb3-versions/<version>/, tiny agents that each release trained and saved in a
throwaway venv of its own (scripts/make_sb3_version_agents.py; README.md there). Each folder's
``reference.npz`` holds the actions that release's own ``predict`` gave for 64 rollout observations:
edgekit's restricted loader (no pickled code run, no ``gym`` installed) must rebuild exactly that
policy under today's SB3, and the int8 bundle built from it must act like it.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO

DATA = REPO / "tests" / "data" / "sb3-versions"
VERSIONS = sorted((p.name for p in DATA.iterdir() if (p / "agents.json").is_file()),
                  key=lambda v: tuple(int(x) for x in v.split(".")))
CASES = [(version, agent["name"]) for version in VERSIONS
         for agent in json.loads((DATA / version / "agents.json").read_text())]

# As tests/test_build_e2e.py, for tiny barely-trained agents: continuous actions within 5 % of the range
# on average and 25 % at worst of the float policy; discrete argmax agreeing on >= 90 % of decisive states.
MEAN_SHARE_TOL = 0.05
MAX_SHARE_TOL = 0.25
DECISIVE_AGREEMENT_MIN = 0.90
RAW_AGREEMENT_MIN = 0.80  # on all 64 reference states, near-ties included


def _agent(version: str, name: str) -> dict[str, Any]:
    return next(a for a in json.loads((DATA / version / "agents.json").read_text()) if a["name"] == name)


def _reference(version: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA / version / "reference.npz") as data:
        return data[f"{name}/obs"], data[f"{name}/actions"]


def _no_unpickling(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("an unrestricted unpickler was used")


def test_every_version_has_its_agents_and_says_what_saved_them():
    assert {"1.5.0", "1.6.2", "1.8.0", "2.0.0", "2.3.2", "2.4.1"} <= set(VERSIONS)
    for version in VERSIONS:
        versions = json.loads((DATA / version / "versions.json").read_text())
        assert versions["stable-baselines3"] == version
        assert ("gym" in versions) == version.startswith("1.") and ("gymnasium" in versions) != ("gym" in versions)
        assert versions["torch"].startswith("2.13.0")
        for agent in json.loads((DATA / version / "agents.json").read_text()):
            path = DATA / version / agent["file"]
            with zipfile.ZipFile(path) as archive:
                assert archive.read("_stable_baselines3_version").decode().strip() == version
            assert path.stat().st_size < 100_000  # test data stays small


@pytest.mark.parametrize("version,name", CASES)
def test_restricted_loader_rebuilds_the_policy_that_release_saved(version, name, monkeypatch):
    import cloudpickle
    from stable_baselines3.common import save_util

    from edgekit.host.loading import load_agent
    from edgekit.host.loading.vecnormalize import load_vecnormalize

    assert importlib.util.find_spec("gym") is None  # zips pickled under gym load without it
    for module, attr in ((pickle, "loads"), (pickle, "load"), (cloudpickle, "loads"), (cloudpickle, "load"),
                         (save_util, "json_to_data"), (save_util, "load_from_zip_file")):  # SB3's own loading
        monkeypatch.setattr(module, attr, _no_unpickling)
    agent = _agent(version, name)
    loaded = load_agent(DATA / version / agent["file"])
    assert loaded.sb3_version == version and loaded.algorithm.name == agent["algo"]
    obs, expected = _reference(version, name)
    if "vecnormalize" in agent:  # the policy saw VecNormalize'd observations
        norm = load_vecnormalize(DATA / version / agent["vecnormalize"], obs.shape[1])
        assert norm is not None
        obs = np.clip((obs - np.array(norm.mean)) / np.array(norm.std), -norm.clip, norm.clip).astype(np.float32)
    actual = loaded.model.predict(obs, deterministic=True)[0]
    assert actual.shape == expected.shape
    if loaded.action_space.kind == "discrete":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_shared_layers_of_sb3_before_1_8_become_separate_networks():
    """``[32, dict(pi=[16], vf=[8])]`` (one shared layer) is rebuilt as pi [32, 16] and vf [32, 8]."""
    from edgekit.host.loading import load_agent

    policy = load_agent(DATA / "1.6.2" / "a2c-CartPole-v1.zip").model.policy
    assert policy.net_arch == {"pi": [32, 16], "vf": [32, 8]}
    extractor = policy.mlp_extractor
    assert extractor.policy_net[0].weight.data_ptr() != extractor.value_net[0].weight.data_ptr()  # copies
    np.testing.assert_array_equal(extractor.policy_net[0].weight.detach(), extractor.value_net[0].weight.detach())
    assert load_agent(DATA / "1.6.2" / "ppo-Pendulum-v1.zip").model.policy.net_arch == {"pi": [32, 32],
                                                                                         "vf": [32, 32]}


def test_shared_layers_that_net_arch_does_not_describe_are_refused():
    import torch

    from edgekit.core.errors import ModelFileError
    from edgekit.host.loading.shared_layers import unshare_layers

    params = {"mlp_extractor.shared_net.0.weight": torch.zeros(32, 3),
              "mlp_extractor.shared_net.0.bias": torch.zeros(32),
              "mlp_extractor.policy_net.0.weight": torch.zeros(16, 32), "action_net.weight": torch.zeros(2, 16)}
    kwargs, renamed = unshare_layers({"net_arch": [32, {"pi": [16]}]}, params, "m.zip")
    assert kwargs["net_arch"] == {"pi": [32, 16], "vf": [32]}
    assert sorted(renamed) == ["action_net.weight", "mlp_extractor.policy_net.0.bias",
                               "mlp_extractor.policy_net.0.weight", "mlp_extractor.policy_net.2.weight",
                               "mlp_extractor.value_net.0.bias", "mlp_extractor.value_net.0.weight"]
    assert unshare_layers({"net_arch": {"pi": [8]}}, {"action_net.weight": torch.zeros(1)}, "m.zip")[0] == {
        "net_arch": {"pi": [8]}}  # nothing shared: unchanged
    for net_arch in ([32, 32], [], {"pi": [32]}, [32, "64"], [32, {"pi": [True]}], None):
        with pytest.raises(ModelFileError, match="m.zip"):
            unshare_layers({"net_arch": net_arch}, params, "m.zip")
    with pytest.raises(ModelFileError, match="named"):
        unshare_layers({"net_arch": [32]}, {**params, "mlp_extractor.shared_net.x.weight": torch.zeros(1)}, "m.zip")


def _build(version: str, name: str, out: Path) -> Any:
    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.stages.rollouts import RolloutRecipe

    agent = _agent(version, name)
    path = DATA / version / agent["file"]
    # a zoo run folder is passed as the folder: its env id and vecnormalize.pkl are found there
    model, env_id = (path.parent, None) if "vecnormalize" in agent else (path, agent["env"])
    options = BuildOptions(model=model, env_id=env_id, output=out / "bundle",
                           recipe=RolloutRecipe(calibration_steps=200, held_out_steps=200, seed=1),
                           report=ReportOptions(episodes=0))
    return build(options, Progress(quiet=True))


@pytest.mark.slow
@pytest.mark.parametrize("version,name", CASES)
def test_bundle_acts_like_the_policy_that_release_saved(version, name, tmp_path):
    from edgekit.bundle import Manifest
    from edgekit.runtime import EdgePolicy

    assert importlib.util.find_spec("gym") is None
    agent = _agent(version, name)
    result = _build(version, name, tmp_path)
    manifest = Manifest.read(result.bundle_dir)
    assert manifest.source["sb3_version"] == version
    assert manifest.algorithm == agent["algo"] and manifest.env_id == agent["env"]
    assert (manifest.preprocess.normalize is not None) == ("vecnormalize" in agent)
    policy = EdgePolicy.load(result.bundle_dir, device="cpu")
    obs, expected = _reference(version, name)  # raw observations: the bundle applies VecNormalize itself
    actual = policy.predict(obs)
    assert actual.shape == expected.shape
    space = manifest.action_space
    if space.kind == "box":
        share = np.abs(actual - expected) / (space.high_array() - space.low_array())
        assert share.mean() <= MEAN_SHARE_TOL and share.max() <= MAX_SHARE_TOL, (share.mean(), share.max())
    else:
        discrete = result.validation.metrics["discrete"]
        assert discrete["decisive_agreement"] is None or discrete["decisive_agreement"] >= DECISIVE_AGREEMENT_MIN
        assert np.mean(actual == expected) >= RAW_AGREEMENT_MIN, np.mean(actual == expected)
