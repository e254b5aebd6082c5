"""Rebuild an SB3 policy from its zip without running any code the file holds.

SB3's ``load`` unpickles every field of the zip's ``data`` JSON, and a pickle
can run anything. Inference needs only the spaces, the policy class and its
``policy_kwargs``, and the weights, so this module decodes exactly those:

* the pickled fields through ``restricted_unpickle`` (an allow-list of classes),
* ``policy.pth`` with ``torch.load(weights_only=True)`` (tensors only),

renames the weights of SB3 < 1.8's shared actor-critic layers (``shared_layers``)
and of other layouts older releases wrote (``renames``), then builds the policy
class as SB3's ``_setup_model`` does (spaces, a dummy learning-rate schedule,
``policy_kwargs``) and loads the weights strictly.
Schedules, optimizer state, replay buffers and the rest stay unread.
"""

from __future__ import annotations

import base64
import binascii
import io
import pickle
import pickletools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import ModelFileError, UnsafePickleError
from edgekit.host.loading.model_zip import ModelFileInfo, read_member
from edgekit.host.loading.renames import fit_known_renames
from edgekit.host.loading.restricted_unpickle import restricted_loads, short_message
from edgekit.host.loading.shared_layers import has_shared_layers, unshare_layers

MAX_CRITICS = 16  # SB3 uses 1 or 2; a larger count only multiplies memory

# A pickled class reference is these opcodes and nothing else: no call, no object built.
_REFERENCE_OPCODES = frozenset({"PROTO", "FRAME", "GLOBAL", "STACK_GLOBAL", "SHORT_BINUNICODE", "BINUNICODE",
                                "UNICODE", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"})


@dataclass
class RestoredModel:
    """The part of an SB3 model that edgekit uses: the policy and its spaces.

    Stands in for the algorithm object downstream (``model.policy``,
    ``model.predict``); it has no environment, schedules or training state.
    """

    policy: Any
    observation_space: Any
    action_space: Any
    use_sde: bool = False
    notes: tuple[str, ...] = ()  # what was changed to read an older file (renamed tensors), one line each

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]:
        """``policy.predict``, as SB3's ``model.predict`` delegates (deterministic by default: edgekit
        deploys the deterministic policy)."""
        return self.policy.predict(observation, state, episode_start, deterministic)


def restore_model(path: Path, info: ModelFileInfo,
                  check_spaces: Callable[[Any, Any], None] | None = None) -> RestoredModel:
    """Decode the fields inference needs and rebuild the policy with the zip's weights.

    ``check_spaces(observation_space, action_space)`` runs before the network
    is built, so an unsupported model is refused before any work.
    """
    name = Path(path).name
    data = info.data
    algorithm_class = info.algorithm.load_class()
    obs_space = _decode(data, "observation_space", name, check=_check_space)
    act_space = _decode(data, "action_space", name, check=_check_space)
    if check_spaces is not None:
        check_spaces(obs_space, act_space)
    policy_kwargs = _policy_kwargs(data, name)
    policy_class = _policy_class(data, name, algorithm_class)
    params = _read_weights(path)
    _check_network_size(policy_kwargs, obs_space, params, name)
    notes = ["policy.pth has SB3 < 1.8's shared actor-critic layers: rebuilt as separate pi/vf networks holding "
             "the same weights"] if has_shared_layers(params) else []
    policy_kwargs, params = unshare_layers(policy_kwargs, params, name)  # SB3 < 1.8's shared layers
    use_sde = bool(data.get("use_sde", False))
    # As SB3's _setup_model: on-policy algorithms pass use_sde, off-policy ones keep it in policy_kwargs.
    kwargs = {"use_sde": use_sde, **policy_kwargs} if _is_on_policy(algorithm_class) else dict(policy_kwargs)
    held = sum(int(t.numel()) for t in params.values())
    policy = _build_policy(policy_class, obs_space, act_space, kwargs, name, info.algorithm.policy_takes_schedule,
                           max_elements=held)
    params, renamed = fit_known_renames(policy, params)  # names older releases wrote
    notes += [renamed] if renamed else []
    _load_weights(policy, params, name)
    policy.set_training_mode(False)
    if use_sde:
        _sample_noise(policy, name)
    return RestoredModel(policy=policy, observation_space=obs_space, action_space=act_space, use_sde=use_sde,
                         notes=tuple(notes))


def _build_policy(policy_class: type, obs_space: Any, act_space: Any, kwargs: dict[str, Any], name: str,
                  takes_schedule: bool = True, max_elements: int | None = None) -> Any:
    """The policy as SB3 builds it; with ``max_elements`` (what policy.pth holds), refused as soon as its
    parameters and buffers outgrow it (``_network_at_most``)."""
    import torch

    schedule = (_no_schedule,) if takes_schedule else ()  # ARS's policy has no optimizer, hence no schedule
    try:
        with torch.random.fork_rng(devices=[]), _network_at_most(max_elements, name):
            return policy_class(obs_space, act_space, *schedule, **kwargs)  # the weights are overwritten: RNG kept
    except ModelFileError:
        raise
    except Exception as exc:  # the constructor raises many types for kwargs that do not fit
        raise ModelFileError(f"{name}: its policy_kwargs do not build a {policy_class.__name__} "
                             f"({type(exc).__name__}: {short_message(exc)})") from None


@contextmanager
def _network_at_most(elements: int | None, name: str) -> Iterator[None]:
    """Refuse a network that grows past ``elements`` values, at the registration of the parameter or
    buffer that passes it: before it is initialized, so before its memory is touched.

    ``policy_kwargs`` size the network (net_arch, n_quantiles, features_dim, cnn_output_dim, ...), and
    the weights must then fit it exactly; so a network larger than ``policy.pth`` can only come from a
    file whose kwargs were altered to make edgekit fill gigabytes (``n_quantiles=10**7``: 10 GB).
    """
    if elements is None:
        yield
        return
    from torch.nn.modules import module

    budget = elements + elements // 100 + 4096  # non-persistent buffers are not in policy.pth
    built = 0

    def count(_module: Any, _name: str, tensor: Any) -> None:
        nonlocal built
        built += int(tensor.numel()) if tensor is not None else 0
        if built > budget:
            raise ModelFileError(f"{name}: its policy_kwargs describe a larger network than policy.pth holds "
                                 f"(over {built:,} values for {elements:,})",
                                 hint="the file was altered; save the model again with SB3")

    hooks = (module.register_module_parameter_registration_hook(count),
             module.register_module_buffer_registration_hook(count))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _sample_noise(policy: Any, name: str) -> None:
    """As SB3's load does for gSDE: sample the exploration matrix (deterministic predict ignores it)."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            policy.reset_noise()
    except Exception as exc:  # e.g. use_sde set for a policy without a gSDE distribution
        raise ModelFileError(f"{name}: use_sde is set but its policy has no gSDE noise to sample "
                             f"({type(exc).__name__})") from None


def _no_schedule(_progress: float) -> float:
    """Learning-rate schedule for a policy that is never trained here (the optimizer needs one)."""
    return 0.0


# --- the pickled fields ---------------------------------------------------------------------------


def _payload(data: Mapping[str, Any], key: str, name: str) -> bytes | None:
    item = data.get(key)
    if not isinstance(item, dict) or ":serialized:" not in item:
        return None
    try:
        return base64.b64decode(str(item[":serialized:"]).encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ModelFileError(f"{name}: the pickled field {key} is not valid base64") from None


def _decode(data: Mapping[str, Any], key: str, name: str, check: Callable[[Any], None] | None = None) -> Any:
    payload = _payload(data, key, name)
    if payload is None:
        raise ModelFileError(f"{name} has no pickled {key} in its data (not a model saved by SB3's save)")
    return restricted_loads(payload, f"{name}'s {key}", check=check)


def _check_space(space: Any, depth: int = 0) -> None:
    """The decoded object must be a consistent gymnasium space (its state came from the file)."""
    from gymnasium import spaces

    if not isinstance(space, spaces.Space):
        raise ValueError(f"{type(space).__name__} is not a gymnasium space")
    if isinstance(space, spaces.Box) and not _consistent_box(space):
        raise ValueError("its Box bounds do not match its shape and dtype")
    if isinstance(space, spaces.Discrete) and not (_integer(space.n) and space.n >= 1 and _integer(space.start)):
        raise ValueError("its Discrete size is not a positive integer")
    if isinstance(space, spaces.MultiDiscrete) and not _consistent_multi_discrete(space):
        raise ValueError("its MultiDiscrete nvec is not an array of positive integers of its shape")
    if isinstance(space, spaces.MultiBinary) and not _positive_shape(getattr(space, "_shape", None)):
        raise ValueError("its MultiBinary shape is not a tuple of positive integers")
    if isinstance(space, spaces.Dict):
        subspaces = getattr(space, "spaces", None)
        if depth > 0 or not isinstance(subspaces, dict) or not subspaces \
                or not all(isinstance(k, str) for k in subspaces):
            raise ValueError("its Dict is not a flat mapping of named spaces")
        for sub in subspaces.values():
            _check_space(sub, depth + 1)


def _consistent_multi_discrete(space: Any) -> bool:
    nvec, start = getattr(space, "nvec", None), getattr(space, "start", None)
    return (isinstance(nvec, np.ndarray) and nvec.dtype.kind in "iu" and nvec.size > 0 and bool(np.all(nvec >= 1))
            and _positive_shape(getattr(space, "_shape", None)) and nvec.shape == space._shape
            and (start is None or isinstance(start, np.ndarray) and start.shape == nvec.shape))


def _positive_shape(shape: Any) -> bool:
    return isinstance(shape, tuple) and len(shape) > 0 and all(_integer(v) and v > 0 for v in shape)


def _consistent_box(space: Any) -> bool:
    shape, arrays = space.shape, (space.low, space.high)
    return (isinstance(shape, tuple) and all(_integer(v) and v > 0 for v in shape)
            and isinstance(space.dtype, np.dtype) and space.dtype.kind in "biuf"
            and all(isinstance(a, np.ndarray) and a.shape == shape and a.dtype.kind in "biuf"
                    and not np.isnan(a.astype(np.float64)).any() for a in arrays))


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _policy_kwargs(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``policy_kwargs`` as SB3's ``load`` passes them: plain JSON, or the decoded pickle."""
    payload = _payload(data, "policy_kwargs", name)
    raw = data.get("policy_kwargs", {}) if payload is None else restricted_loads(payload, f"{name}'s policy_kwargs")
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ModelFileError(f"{name}: its policy_kwargs are not a dict of keyword arguments")
    kwargs = {k: v for k, v in raw.items() if k != "device"}  # SB3 drops the saved device too
    net_arch = kwargs.get("net_arch")
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
        kwargs["net_arch"] = net_arch[0]  # SB3 < 1.8 wrote [dict(pi=..., vf=...)]
    return kwargs


def _policy_class(data: Mapping[str, Any], name: str, algorithm_class: type) -> type:
    """The saved policy class, which must be one of the algorithm's own (MlpPolicy, CnnPolicy, ...)."""
    payload = _payload(data, "policy_class", name)
    if payload is None:
        raise ModelFileError(f"{name} has no pickled policy_class in its data")
    known = {(c.__module__, c.__qualname__): c for c in getattr(algorithm_class, "policy_aliases", {}).values()}
    where = f"{name}'s policy_class"
    try:
        opcodes = {op.name for op, _arg, _pos in pickletools.genops(payload)}
    except Exception:  # pickletools raises ValueError and others on damaged data
        raise ModelFileError(f"{where} could not be decoded (damaged pickle)") from None
    if not opcodes <= _REFERENCE_OPCODES:
        raise UnsafePickleError(f"{where} is not a plain class reference (it builds or calls objects)")
    value = restricted_loads(payload, where, extra=known)
    if value not in known.values():
        raise ModelFileError(f"{where} is {value!r}, not a policy of this algorithm")
    return value


def _is_on_policy(algorithm_class: type) -> bool:
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    return issubclass(algorithm_class, OnPolicyAlgorithm)


# --- the weights ----------------------------------------------------------------------------------


def _read_weights(path: Path) -> dict[str, Any]:
    """``policy.pth`` as a flat dict of tensors, read by torch's weights-only unpickler."""
    import torch

    name = Path(path).name
    raw = read_member(path, "policy.pth")
    try:
        params = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise UnsafePickleError(f"{name}'s policy.pth refers to {found.group(1)}, which torch's weights-only "
                                    "loader does not load") from None
        raise ModelFileError(f"{name}'s policy.pth is damaged ({short_message(exc)})") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError... for damaged files
        raise ModelFileError(f"{name}'s policy.pth is damaged ({type(exc).__name__}: {short_message(exc)})") from None
    if not isinstance(params, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in params.items()):
        raise ModelFileError(f"{name}'s policy.pth is not a state dict of tensors")
    return params


def _check_network_size(policy_kwargs: Mapping[str, Any], obs_space: Any, params: Mapping[str, Any],
                        name: str) -> None:
    """Refuse a space and ``policy_kwargs`` that describe a far larger network than ``policy.pth`` holds.

    The first layer of each ``net_arch`` list reads the flattened observation
    and every consecutive pair of widths is a weight matrix the file must
    hold, so their sum is a lower bound of its size: a few edited bytes must
    not make edgekit allocate gigabytes before the weights are compared.
    """
    held = sum(int(t.numel()) for t in params.values())
    widths = _width_lists(policy_kwargs.get("net_arch"))
    features, extractor = _features_read_by_net_arch(policy_kwargs, obs_space, name)
    needed = extractor + features * max(1, sum(layers[0] for layers in widths if layers))
    needed += sum(a * b for layers in widths for a, b in zip(layers, layers[1:]))
    critics = policy_kwargs.get("n_critics", 1)
    if not isinstance(critics, int) or not 1 <= critics <= MAX_CRITICS:
        raise ModelFileError(f"{name}: its policy_kwargs ask for {critics!r} critics")
    if any(w > held for layers in widths for w in layers) or needed * critics > held:
        raise ModelFileError(f"{name}: its policy_kwargs describe a larger network than policy.pth holds",
                             hint="the file was altered; save the model again with SB3")


def _features_read_by_net_arch(policy_kwargs: Mapping[str, Any], obs_space: Any, name: str) -> tuple[int, int]:
    """How many features the first ``net_arch`` layer reads, and the weights a features extractor must
    hold before it: the flattened observation and 0, or for images NatureCNN's ``features_dim`` and its
    Linear layer (last feature map x features_dim)."""
    from edgekit.core.spaces import IMAGE, observation_kind
    from edgekit.host.gym_envs import space_spec

    flat = int(np.prod(getattr(obs_space, "shape", None) or (1,), dtype=np.float64))
    try:
        image = observation_kind(space_spec(obs_space, "observation")) == IMAGE
    except Exception:  # a space edgekit does not describe: the flat bound stands
        image = False
    if not image:
        return flat, 0
    extractor_kwargs = policy_kwargs.get("features_extractor_kwargs") or {}
    dim = extractor_kwargs.get("features_dim", 512) if isinstance(extractor_kwargs, dict) else 512
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ModelFileError(f"{name}: its features_extractor_kwargs ask for features_dim {dim!r}")
    return dim, _nature_cnn_flat(tuple(obs_space.shape)) * dim


def _nature_cnn_flat(chw: tuple[int, ...]) -> int:
    """Size of NatureCNN's last feature map (8x8/4, 4x4/2, 3x3/1 convolutions, 64 channels) on (C, H, W)."""
    sides = []
    for side in chw[1:]:
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            side = (side - kernel) // stride + 1
        sides.append(max(side, 0))
    return 64 * sides[0] * sides[1]


def _width_lists(net_arch: Any) -> list[list[int]]:
    if isinstance(net_arch, dict):
        return [layers for value in net_arch.values() for layers in _width_lists(value)]
    if isinstance(net_arch, (list, tuple)):
        ints = [v for v in net_arch if isinstance(v, int) and not isinstance(v, bool)]
        nested = [layers for v in net_arch if isinstance(v, (dict, list, tuple)) for layers in _width_lists(v)]
        return [ints, *nested] if ints else nested
    return []


def _load_weights(policy: Any, params: Mapping[str, Any], name: str) -> None:
    """``load_state_dict(strict=True)``, with a one-line message naming the first mismatch."""
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        what = f"lacks {missing[0]!r}" if missing else f"has an unknown tensor {unexpected[0]!r}"
        raise ModelFileError(f"{name}'s policy.pth does not fit its {type(policy).__name__}: it {what} "
                             f"({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, tensor in expected.items():
        if tuple(params[key].shape) != tuple(tensor.shape):
            raise ModelFileError(f"{name}'s policy.pth does not fit its {type(policy).__name__}: tensor {key!r} "
                                 f"has shape {tuple(params[key].shape)}, the network needs {tuple(tensor.shape)}")
    try:
        policy.load_state_dict(params, strict=True)
    except Exception as exc:  # e.g. a dtype torch cannot copy
        raise ModelFileError(f"{name}'s policy.pth could not be loaded ({type(exc).__name__}: {short_message(exc)})") \
            from None

