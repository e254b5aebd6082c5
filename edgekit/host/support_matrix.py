"""What edgekit deploys: the support matrix, derived from the algorithm table.

A *combination* is (algorithm, policy alias, observation kind, action kind),
the four things that decide whether a model can be deployed. The matrix is the
product of what each algorithm row supports (``edgekit.host.algorithms``) and what
each policy takes (``POLICY_OBSERVATIONS``), so adding a kind in one of those
two places adds it here; the coverage tests (``tests/test_coverage.py``) fail
until an end-to-end case exercises every supported combination.

``NOT_SUPPORTED`` gives the reason for what is refused; the loader quotes it.
Light: no torch, no SB3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgekit.core.errors import UnsupportedModelError
from edgekit.core.spaces import BOX, DICT, DISCRETE, IMAGE, IMAGE_DICT, MULTI_BINARY, MULTI_DISCRETE
from edgekit.host.algorithms import ALGORITHMS

MLP = "MlpPolicy"
CNN = "CnnPolicy"  # SB3's NatureCNN features extractor on image observations
MULTI_INPUT = "MultiInputPolicy"

# Observation kinds each SB3 policy alias takes (see edgekit.core.spaces for the kinds). Non-Box observations
# are one-hot / cast to float as SB3's preprocess_obs does (edgekit.core.observations), on the host side.
POLICY_OBSERVATIONS: Mapping[str, tuple[str, ...]] = {
    MLP: (BOX, DISCRETE, MULTI_DISCRETE, MULTI_BINARY),
    CNN: (IMAGE,),
    MULTI_INPUT: (DICT,),  # CombinedExtractor with a Flatten per key: Box, Discrete, MultiDiscrete, MultiBinary
    "LinearPolicy": (BOX,),  # ARS (sb3-contrib): a single Linear layer
}

# Why the rest is refused: keyed by policy alias or observation/action kind.
NOT_SUPPORTED: Mapping[str, str] = {
    IMAGE: "image observations are deployed with CnnPolicy (SB3's NatureCNN); MlpPolicy on images is not "
           "supported (train with CnnPolicy, or flatten the images into a float Box)",
    IMAGE_DICT: "Dict observations with image keys (CombinedExtractor's CNN per image) are not supported yet",
    "MlpLstmPolicy": "recurrent (LSTM) policies need their state carried between steps; the runtime is stateless",
}


@dataclass(frozen=True, order=True)
class Combination:
    """One deployable kind of model."""

    algorithm: str
    policy: str
    observation: str
    action: str

    def describe(self) -> str:
        return f"{self.algorithm} {self.policy}, {self.observation} observations, {self.action} actions"


def supported_combinations() -> tuple[Combination, ...]:
    """Every combination edgekit deploys, sorted."""
    return tuple(sorted(
        Combination(spec.name, policy, observation, action)
        for spec in ALGORITHMS.values()
        for policy in spec.policies
        for observation in POLICY_OBSERVATIONS.get(policy, ())
        for action in spec.action_kinds
    ))


def check_supported(combination: Combination) -> None:
    """Raise ``UnsupportedModelError`` with the reason unless ``combination`` is deployable."""
    if combination in supported_combinations():
        return
    spec = ALGORITHMS[combination.algorithm]
    if combination.policy not in spec.policies:
        reason = NOT_SUPPORTED.get(combination.policy, f"{combination.policy} is not supported for {spec.name}")
    elif combination.observation not in POLICY_OBSERVATIONS.get(combination.policy, ()):
        reason = NOT_SUPPORTED.get(combination.observation,
                                   f"{combination.observation} observations are not supported with "
                                   f"{combination.policy}")
    else:
        reason = NOT_SUPPORTED.get(combination.action,
                                   f"{spec.name} with {combination.action} actions is not supported")
    raise UnsupportedModelError(f"{combination.describe()}: {reason}", hint="see docs/supported.md")
