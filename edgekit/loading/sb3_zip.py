"""Read an SB3 ``model.zip``: recognise it without unpickling, then load it.

Recognition reads the zip's ``data`` JSON only (the algorithm table decides
from the policy class's module and the saved hyper-parameters), so a file
that is not an SB3 model, or one of an unsupported algorithm, is refused
before any pickled object is touched. Loading then goes through
``edgekit.loading.safe_load`` (no pickled code runs) unless the caller trusts
the file (``trust_pickle``: SB3's own ``load``, which unpickles everything).

Every member is size-checked before it is read: a zip bomb (a small file
that inflates to gigabytes) is refused by its declared sizes.
"""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.algorithms import AlgorithmSpec, detect_algorithm, policy_class_name
from edgekit.artifacts import LoadedAgent
from edgekit.bundle.files import sha256_file
from edgekit.envs import space_spec
from edgekit.errors import ModelFileError, UnsupportedModelError
from edgekit.spaces import SpaceSpec, observation_kind

MAX_DATA_BYTES = 64 * 1024 * 1024  # the data JSON of a real model is well under 1 MiB
MAX_POLICY_BYTES = 2 * 1024 * 1024 * 1024
MAX_MEMBER_BYTES = 2 * 1024 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_MEMBERS = 1000
MAX_RATIO = 100  # SB3 stores members uncompressed (ratio 1); deflate reaches ~10 on real data
RATIO_FLOOR = 1024 * 1024  # a small member may compress well without harm

# Training-only fields: replaced instead of unpickled (schedules are cloudpickled
# functions that older Pythons wrote and newer ones often cannot rebuild).
_TRAINING_ONLY = {
    "learning_rate": 0.0,
    "lr_schedule": lambda _progress: 0.0,
    "clip_range": lambda _progress: 0.0,
    "clip_range_vf": None,
    "exploration_schedule": lambda _progress: 0.0,
    "delta_std_schedule": lambda _progress: 0.0,  # ARS
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
    members = _checked_members(path)
    if "data" not in members or "policy.pth" not in members:
        raise ModelFileError(f"{path} is a zip but not an SB3 model (no 'data' or no 'policy.pth' inside)")
    raw = read_member(path, "data")
    version = read_member(path, "_stable_baselines3_version").decode("utf-8", "replace").strip()[:64] \
        if "_stable_baselines3_version" in members else "unknown"
    try:
        data = _json_bounded(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: its 'data' member is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: its 'data' member is not an SB3 data object")
    return ModelFileInfo(
        algorithm=detect_algorithm(data),
        policy_class=policy_class_name(data),
        sb3_version=version,
        data=data,
    )


def read_member(path: Path, name: str) -> bytes:
    """One member's bytes; its declared size was checked by ``_checked_members`` and bounds the read."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    except Exception as exc:  # zipfile, zlib, bz2 and lzma raise many types for damaged archives
        raise ModelFileError(f"{path} is a damaged zip ({type(exc).__name__}: {exc})") from None


def _checked_members(path: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip's members, refused when their declared sizes or compression ratios look like a zip bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except Exception as exc:  # a damaged central directory
        raise ModelFileError(f"{path} is a damaged zip ({type(exc).__name__}: {exc})") from None
    limits = {"data": MAX_DATA_BYTES, "policy.pth": MAX_POLICY_BYTES, "_stable_baselines3_version": 1024}
    total = 0
    for info in infos:
        size = info.file_size
        total += size
        ratio = size / max(info.compress_size, 1)
        if size > limits.get(info.filename, MAX_MEMBER_BYTES) or (size > RATIO_FLOOR and ratio > MAX_RATIO):
            raise ModelFileError(
                f"{path}: member {info.filename!r} would inflate to {size} bytes (compression ratio {ratio:.0f}), "
                "too large for an SB3 model; refusing to read it (zip bomb?)",
                hint="pass the .zip written by SB3's model.save(...), not a repacked or altered file",
            )
    if len(infos) > MAX_MEMBERS or total > MAX_TOTAL_BYTES:
        raise ModelFileError(f"{path} holds {len(infos)} members, {total} bytes in all: too large for an SB3 model")
    return {info.filename: info for info in infos}


def _json_bounded(raw: bytes) -> object:
    """json.loads with a sane recursion limit (see ``edgekit.bundle.manifest``): a deeply nested hostile
    file must fail cleanly even after another library raised the limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, 2000))
    try:
        return json.loads(raw)
    finally:
        sys.setrecursionlimit(limit)


def load_agent(path: Path, trust_pickle: bool = False) -> LoadedAgent:
    """Load the model on the CPU and check edgekit can deploy it.

    By default no pickled code runs (``safe_load``); ``trust_pickle`` uses
    SB3's own loader instead, for a file whose author the user trusts.
    """
    path = Path(path)
    info = inspect_model_zip(path)
    _refuse_legacy_her(info, path)
    if trust_pickle:
        model = _load_with_sb3(path, info)
    else:
        from edgekit.loading.safe_load import restore_model

        def check_spaces(observation_space: Any, action_space: Any) -> None:
            _check_supported(info, space_spec(observation_space, "observation"), space_spec(action_space, "action"))

        model = restore_model(path, info, check_spaces)
    obs_space = space_spec(model.observation_space, "observation")
    act_space = space_spec(model.action_space, "action")
    policy = info.algorithm.policy_alias(model.policy)
    _check_supported(info, obs_space, act_space, policy)
    return LoadedAgent(
        path=path,
        sha256=sha256_file(path),
        algorithm=info.algorithm,
        policy_class=info.policy_class,
        policy=policy,
        sb3_version=info.sb3_version,
        observation_space=obs_space,
        action_space=act_space,
        model=model,
        notes=tuple(getattr(model, "notes", ())),
    )


def _refuse_legacy_her(info: ModelFileInfo, path: Path) -> None:
    """SB3 < 1.1's ``HER`` class saved its own fields beside the wrapped algorithm's (``model_class``,
    ``goal_selection_strategy``), and its policy read the goal env's Dict flattened by ``ObsDictWrapper``
    ([observation, desired_goal] concatenated into one Box). SB3 1.1 replaced both by ``HerReplayBuffer``
    and a ``MultiInputPolicy`` on the Dict itself: no current SB3 or goal env produces that flat input."""
    if "model_class" not in info.data or "goal_selection_strategy" not in info.data:
        return
    raise UnsupportedModelError(
        f"{path.name} was saved by SB3 {info.sb3_version}'s HER class, whose policy reads the goal env's "
        "'observation' and 'desired_goal' concatenated into one Box (SB3 < 1.1's ObsDictWrapper); SB3 1.1 removed "
        "that layout (HerReplayBuffer + MultiInputPolicy on the Dict), so neither today's SB3 nor edgekit runs it",
        hint="retrain with SB3 >= 1.1 (HerReplayBuffer, MultiInputPolicy), e.g. the RL Zoo's tqc/FetchReach agents")


def _load_with_sb3(path: Path, info: ModelFileInfo) -> Any:
    """SB3's ``cls.load``: unpickles every field, so it runs whatever code the file holds."""
    cls = info.algorithm.load_class()
    try:
        return cls.load(path, device="cpu", custom_objects=dict(_TRAINING_ONLY), print_system_info=False)
    except ModuleNotFoundError as exc:
        raise ModelFileError(
            f"{path} was saved with objects from a module that is not installed ({exc.name})",
            hint="save the model again with a current stable-baselines3 and gymnasium",
        ) from None
    except Exception as exc:  # SB3 raises many types for damaged files
        raise ModelFileError(f"stable-baselines3 could not load {path}: {type(exc).__name__}: {exc}") from None


def _check_supported(info: ModelFileInfo, obs_space: SpaceSpec, act_space: SpaceSpec,
                     policy: str | None = None) -> None:
    """The support matrix (``edgekit.support``) decides; ``policy=None``: before the policy class is known,
    accept the spaces if any of the algorithm's policies takes them."""
    from edgekit.support import Combination, check_supported

    if act_space.kind == "discrete" and act_space.start != 0:
        raise UnsupportedModelError("Discrete action spaces with a non-zero start are not supported (nor by SB3)")
    parts = obs_space.spaces if obs_space.kind == "dict" else (("", obs_space),)
    if any(sub.kind == "discrete" and sub.start != 0 for _key, sub in parts or ()):
        raise UnsupportedModelError("Discrete observation spaces with a non-zero start are not supported (SB3's "
                                    "one-hot ignores start)")
    observation = observation_kind(obs_space)
    candidates = (policy,) if policy is not None else info.algorithm.policies
    errors: list[UnsupportedModelError] = []
    for alias in candidates:
        try:
            check_supported(Combination(info.algorithm.name, alias, observation, act_space.kind))
            return
        except UnsupportedModelError as exc:
            errors.append(exc)
    raise errors[0]
