"""Load an SB3 ``model.zip`` that ``model_zip`` recognised, and check edgekit can deploy it.

Recognition (``edgekit.host.loading.model_zip``) reads the zip's ``data`` JSON
only, so a file that is not an SB3 model, or one of an unsupported algorithm,
is refused before any pickled object is touched. Loading then goes through
``edgekit.host.loading.safe_load`` (no pickled code runs) unless the caller trusts
the file (``trust_pickle``: SB3's own ``load``, which unpickles everything).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.bundle.layout import sha256_file
from edgekit.core.errors import ModelFileError, UnsupportedModelError
from edgekit.core.spaces import SpaceSpec, observation_kind
from edgekit.host.gym_envs import space_spec
from edgekit.host.loading.loaded_agent import LoadedAgent
from edgekit.host.loading.model_zip import ModelFileInfo, inspect_model_zip

MAX_ABS_WEIGHT = 1e6  # a weight this large is damage or divergence, not training

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
        from edgekit.host.loading.safe_load import restore_model

        def check_spaces(observation_space: Any, action_space: Any) -> None:
            _check_supported(info, space_spec(observation_space, "observation"), space_spec(action_space, "action"))

        model = restore_model(path, info, check_spaces)
    check_weights(model.policy.state_dict(), path.name)
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


def check_weights(state: Mapping[str, Any], name: str) -> None:
    """Refuse a NaN, infinite or absurd weight where it is, naming the tensor: later stages would only
    see its effects (NaN outputs, an int8 scale that zeroes the rest of the layer). Trained SB3
    policies stay far below ``MAX_ABS_WEIGHT`` (the 60 published zoo agents: at most 42)."""
    import torch

    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        values = tensor.detach().abs()
        bad = ~torch.isfinite(values) | (values >= MAX_ABS_WEIGHT)
        if bool(bad.any()):
            index = tuple(int(i) for i in torch.nonzero(bad)[0])
            value = float(tensor.detach()[index]) if index else float(tensor.detach())
            raise ModelFileError(f"{name}'s policy.pth holds {value:g} in tensor {key!r} at {list(index)}: not a "
                                 f"finite weight below {MAX_ABS_WEIGHT:g}, so not a trained policy edgekit can deploy",
                                 hint="the file is damaged or the training diverged; save a model whose weights are "
                                 "finite")


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
    """The support matrix (``edgekit.host.support_matrix``) decides; ``policy=None``: before the policy class is known,
    accept the spaces if any of the algorithm's policies takes them."""
    from edgekit.host.support_matrix import Combination, check_supported

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
