"""Read an SB3 ``model.zip``: recognise it without unpickling, then load it.

Recognition reads the zip's ``data`` JSON only (the algorithm table decides
from the policy class's module and the saved hyper-parameters), so a file
that is not an SB3 model, or one of an unsupported algorithm, is refused
before any pickled object is touched.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.algorithms import AlgorithmSpec, detect_algorithm, policy_class_name
from edgekit.artifacts import LoadedAgent
from edgekit.bundle.files import sha256_file
from edgekit.envs import space_spec
from edgekit.errors import ModelFileError, UnsupportedModelError
from edgekit.spaces import BOX, SpaceSpec

MAX_DATA_BYTES = 64 * 1024 * 1024  # the data JSON of a real model is well under 1 MiB
MAX_POLICY_BYTES = 2 * 1024 * 1024 * 1024

# Training-only fields: replaced instead of unpickled (schedules are cloudpickled
# functions that older Pythons wrote and newer ones often cannot rebuild).
_TRAINING_ONLY = {
    "learning_rate": 0.0,
    "lr_schedule": lambda _progress: 0.0,
    "clip_range": lambda _progress: 0.0,
    "clip_range_vf": None,
    "exploration_schedule": lambda _progress: 0.0,
    "replay_buffer": None,
    "ep_info_buffer": None,
    "ep_success_buffer": None,
}


@dataclass(frozen=True)
class ModelFileInfo:
    """What the zip says about itself before anything is unpickled."""

    algorithm: AlgorithmSpec
    policy_class: str
    sb3_version: str
    data: dict[str, Any]


def inspect_model_zip(path: Path) -> ModelFileInfo:
    """Check that ``path`` is an SB3 model zip and name its algorithm."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a zip file, so not an SB3 model")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if "data" not in members or "policy.pth" not in members:
                raise ModelFileError(f"{path} is a zip but not an SB3 model (no 'data' or no 'policy.pth' inside)")
            if members["data"].file_size > MAX_DATA_BYTES or members["policy.pth"].file_size > MAX_POLICY_BYTES:
                raise ModelFileError(f"{path} has members too large for an SB3 model; refusing to read it")
            raw = archive.read("data")
            version = archive.read("_stable_baselines3_version").decode("utf-8", "replace").strip() \
                if "_stable_baselines3_version" in members else "unknown"
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is a damaged zip ({exc})") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: its 'data' member is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: its 'data' member is not an SB3 data object")
    return ModelFileInfo(
        algorithm=detect_algorithm(data),
        policy_class=policy_class_name(data),
        sb3_version=version,
        data=data,
    )


def load_agent(path: Path) -> LoadedAgent:
    """Load the model with SB3 on the CPU and check edgekit can deploy it."""
    path = Path(path)
    info = inspect_model_zip(path)
    cls = info.algorithm.load_class()
    try:
        model = cls.load(path, device="cpu", custom_objects=dict(_TRAINING_ONLY), print_system_info=False)
    except ModuleNotFoundError as exc:
        raise ModelFileError(
            f"{path} was saved with objects from a module that is not installed ({exc.name})",
            hint="save the model again with a current stable-baselines3 and gymnasium",
        ) from None
    except Exception as exc:  # SB3 raises many types for damaged files
        raise ModelFileError(f"stable-baselines3 could not load {path}: {type(exc).__name__}: {exc}") from None
    obs_space = space_spec(model.observation_space, "observation")
    act_space = space_spec(model.action_space, "action")
    _check_supported(info, obs_space, act_space)
    return LoadedAgent(
        path=path,
        sha256=sha256_file(path),
        algorithm=info.algorithm,
        policy_class=info.policy_class,
        sb3_version=info.sb3_version,
        observation_space=obs_space,
        action_space=act_space,
        model=model,
    )


def _check_supported(info: ModelFileInfo, obs_space: SpaceSpec, act_space: SpaceSpec) -> None:
    name = info.algorithm.name
    if act_space.kind not in info.algorithm.action_kinds:
        raise UnsupportedModelError(f"{name} with {act_space.describe()} actions is not supported")
    if obs_space.kind != BOX or not obs_space.dtype.startswith("float"):
        raise UnsupportedModelError(
            f"{obs_space.describe()} {obs_space.dtype} observations are not supported yet (float Box observations are)",
            hint="see the README's support table",
        )
    if act_space.kind == "discrete" and act_space.start != 0:
        raise UnsupportedModelError("Discrete action spaces with a non-zero start are not supported (nor by SB3)")
