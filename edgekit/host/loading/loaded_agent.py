"""What the loader hands the build: an SB3 model read from its zip, and what edgekit learned about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.core.spaces import SpaceSpec
from edgekit.host.algorithms import AlgorithmSpec


@dataclass(frozen=True)
class LoadedAgent:
    """An SB3 model read from its zip, with what edgekit learned about it."""

    path: Path
    sha256: str
    algorithm: AlgorithmSpec
    policy_class: str
    sb3_version: str
    observation_space: SpaceSpec
    action_space: SpaceSpec
    model: Any  # the SB3 BaseAlgorithm instance (host only)
    policy: str = "MlpPolicy"  # the SB3 policy alias (MlpPolicy, CnnPolicy, ...): see edgekit.host.support_matrix
    notes: tuple[str, ...] = ()  # what the loader changed to read an older file (e.g. renamed tensors)
