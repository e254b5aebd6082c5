"""Actor-critic networks with shared layers (SB3 < 1.8), rebuilt as the separate networks SB3 has today.

Before 1.8, ``MlpExtractor`` read ``net_arch`` as shared layers followed by an
optional ``dict(pi=[...], vf=[...])`` of separate ones: ``[64, 64]`` was two
layers that the policy and the value network shared, ``[64, dict(pi=[32],
vf=[16])]`` one shared layer then one of each. Its weights are
``mlp_extractor.shared_net.*``. SB3 1.8 removed shared layers (a plain list now
means separate networks of those widths), so today's SB3 cannot load such a
zip at all, its own ``load`` included.

The same functions are separate networks whose first layers are copies of
the shared ones: ``forward_actor`` was ``policy_net(shared_net(x))``, which is
a policy network of the shared widths then the policy-only ones, every layer
followed by the same activation. So ``net_arch`` becomes ``dict(pi=S + P,
vf=S + V)`` and the tensors are renamed (shared ones copied into both
networks, the separate ones shifted past them): the same numbers, no
approximation. Only tensor names change; nothing is executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgekit.core.errors import ModelFileError

SHARED = "mlp_extractor.shared_net."
SEPARATE = ("mlp_extractor.policy_net.", "mlp_extractor.value_net.")
MAX_SHARED_LAYERS = 64


def has_shared_layers(params: Mapping[str, Any]) -> bool:
    return any(key.startswith(SHARED) for key in params)


def unshare_layers(policy_kwargs: Mapping[str, Any], params: Mapping[str, Any], name: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``policy_kwargs`` and weights for today's separate networks; unchanged when nothing is shared."""
    if not has_shared_layers(params):
        return dict(policy_kwargs), dict(params)
    shared, policy_only, value_only = _split(policy_kwargs.get("net_arch"), name)
    # shared_net was Sequential(Linear, activation, Linear, activation, ...): weights at the even indices
    found = {_index(key[len(SHARED):], name) for key in params if key.startswith(SHARED)}
    if found != {2 * i for i in range(len(shared))}:
        raise ModelFileError(f"{name}: its policy.pth has shared layers that its net_arch "
                             f"{policy_kwargs.get('net_arch')!r} does not describe")
    offset = 2 * len(shared)
    renamed: dict[str, Any] = {}
    for key, tensor in params.items():
        if key.startswith(SHARED):
            rest = key[len(SHARED):]
            for prefix in SEPARATE:
                renamed[prefix + rest] = tensor.clone()
        elif key.startswith(SEPARATE):
            prefix = next(p for p in SEPARATE if key.startswith(p))
            index, _, leaf = key[len(prefix):].partition(".")
            renamed[f"{prefix}{_index(index, name) + offset}.{leaf}"] = tensor
        else:
            renamed[key] = tensor
    copied = sum(key.startswith(SHARED) for key in params)  # each shared tensor became two
    if len(renamed) != len(params) + copied:
        raise ModelFileError(f"{name}: its policy.pth names a layer twice")
    kwargs = {**policy_kwargs, "net_arch": {"pi": shared + policy_only, "vf": shared + value_only}}
    return kwargs, renamed


def _split(net_arch: Any, name: str) -> tuple[list[int], list[int], list[int]]:
    """Shared widths, then policy-only and value-only ones, read as SB3 < 1.8 read them (after the first
    dict, the rest of the list was ignored)."""
    if not isinstance(net_arch, list):
        raise ModelFileError(f"{name}: its policy.pth has shared layers but its net_arch is {net_arch!r}, "
                             "not SB3 < 1.8's list of shared widths")
    shared: list[int] = []
    for item in net_arch:
        if _width(item):
            shared.append(item)
            if len(shared) > MAX_SHARED_LAYERS:
                break
            continue
        if isinstance(item, dict) and set(item) <= {"pi", "vf"}:
            pi, vf = item.get("pi", []), item.get("vf", [])
            if isinstance(pi, list) and isinstance(vf, list) and all(_width(v) for v in pi + vf):
                return shared, list(pi), list(vf)
        raise ModelFileError(f"{name}: its net_arch {net_arch!r} is not a list of widths and one dict(pi=..., vf=...)")
    if len(shared) > MAX_SHARED_LAYERS:
        raise ModelFileError(f"{name}: its net_arch has more than {MAX_SHARED_LAYERS} shared layers")
    return shared, [], []


def _width(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _index(text: str, name: str) -> int:
    head = text.split(".", 1)[0]
    if not head.isdigit() or len(head) > 4:
        raise ModelFileError(f"{name}: its policy.pth has an actor-critic layer named {text!r}")
    return int(head)
