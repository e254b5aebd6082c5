"""Published RL Zoo agents of every family load as their releases saved them (issue 15).

Test data: tests/data/zoo-agents (the RL Zoo's published agents, MIT; README there). This file covers
loading and env resolution, which are quick; tests/test_zoo_agents.py builds the agents (slow).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from conftest import REPO

from edgekit.errors import ModelFileError

ZOO = REPO / "tests" / "data" / "zoo-agents"
ARS_SWIMMER = ZOO / "ars" / "Swimmer-v3_1" / "Swimmer-v3.zip"


def _state_dict(path):
    import torch

    with zipfile.ZipFile(path) as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)


def _rewrite_policy(source, target, params):
    """A copy of ``source`` whose policy.pth holds ``params`` (every other member unchanged)."""
    import torch

    buffer = io.BytesIO()
    torch.save(params, buffer)
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            new.writestr(item, buffer.getvalue() if item.filename == "policy.pth" else old.read(item.filename))
    return target


def test_ars_linear_policy_of_sb3_contrib_1_3_loads_under_todays_names():
    """sb3-contrib 1.3 saved ARSLinearPolicy's layer as a bare Linear (action_net.weight); today it is
    action_net.0 of a Sequential, and a strict load refused the file."""
    from edgekit.loading import load_agent

    saved = _state_dict(ARS_SWIMMER)
    assert set(saved) == {"action_net.weight"}  # the published file's layout
    agent = load_agent(ARS_SWIMMER)
    assert agent.algorithm.name == "ARS" and agent.policy == "LinearPolicy"
    assert any("action_net.weight" in note and "sb3-contrib 1.3" in note for note in agent.notes)
    weight = saved["action_net.weight"].numpy()
    obs = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
    actions = agent.model.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(actions, np.clip(obs @ weight.T, -1.0, 1.0), rtol=1e-5, atol=1e-6)


def test_a_rename_never_makes_a_wrong_file_load(tmp_path):
    """The renamed tensors must fit the rebuilt policy exactly: a wrong shape stays refused."""
    import torch

    from edgekit.loading import load_agent

    wrong = _rewrite_policy(ARS_SWIMMER, tmp_path / "wrong.zip", {"action_net.weight": torch.zeros(2, 5)})
    with pytest.raises(ModelFileError, match="does not fit its ARSLinearPolicy"):
        load_agent(wrong)
    extra = _rewrite_policy(ARS_SWIMMER, tmp_path / "extra.zip",
                            {"action_net.weight": torch.zeros(2, 8), "other.weight": torch.zeros(1)})
    with pytest.raises(ModelFileError, match="does not fit its ARSLinearPolicy"):
        load_agent(extra)
