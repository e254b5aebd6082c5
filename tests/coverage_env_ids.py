"""The ids of tests/coverage_envs.py's envs, without Gymnasium: conftest names them when it lists the agent
cases, which the unit lane (numpy and an interpreter only) must be able to import."""

from __future__ import annotations

OBSERVATIONS = ("box", "int_box", "discrete", "multi_discrete", "multi_binary", "dict")
ACTIONS = ("box", "discrete", "multi_discrete", "multi_binary")
_NAMES = {"box": "Box", "int_box": "IntBox", "discrete": "Discrete", "multi_discrete": "MultiDiscrete",
          "multi_binary": "MultiBinary", "dict": "Dict"}


def env_id(observation: str, action: str) -> str:
    """The registered id of the env with this observation kind and action kind."""
    return f"edgekit-test/{_NAMES[observation]}-{_NAMES[action]}-v0"
