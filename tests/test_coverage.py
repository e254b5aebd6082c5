"""The support matrix (edgekit.host.support_matrix) and the end-to-end cases (conftest.AGENT_CASES) agree.

Every supported combination of (algorithm, policy, observation kind, action kind)
must have a case that tests/test_build_e2e.py trains, builds and checks against
SB3's predict; every case must be a supported combination; and what is not
supported is refused with its reason.
"""

from __future__ import annotations

import pytest
from conftest import AGENT_CASES, AgentCase

from edgekit.host.support_matrix import Combination, check_supported, supported_combinations


def _combination(case: AgentCase) -> Combination:
    from edgekit.core.spaces import observation_kind
    from edgekit.host.gym_envs import make_env, space_spec

    env = make_env(case.env_id)
    try:
        observation = observation_kind(space_spec(env.observation_space, "observation"))
        action = space_spec(env.action_space, "action").kind
    finally:
        env.close()
    return Combination(case.algo, case.policy, observation, action)


def test_every_supported_combination_has_an_end_to_end_case():
    covered = {_combination(case) for case in AGENT_CASES.values()}
    missing = [c.describe() for c in supported_combinations() if c not in covered]
    assert not missing, f"supported but not tested end to end: {missing}"


@pytest.mark.parametrize("name", sorted(AGENT_CASES))
def test_every_case_is_a_supported_combination(name):
    check_supported(_combination(AGENT_CASES[name]))


def test_unsupported_combinations_are_refused_with_a_reason():
    from edgekit.core.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="DQN.*box actions"):
        check_supported(Combination("DQN", "MlpPolicy", "box", "box"))
    with pytest.raises(UnsupportedModelError, match="uint8 box observations"):
        check_supported(Combination("PPO", "MlpPolicy", "uint8 box", "box"))
