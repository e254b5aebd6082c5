"""Tensor names that older SB3 / sb3-contrib releases wrote and today's policies call otherwise.

A policy's ``policy.pth`` is a state dict: tensors keyed by the module path that
held them when the file was saved. When a release reorganises a policy's
modules without changing what it computes (a bare ``Linear`` wrapped in a
``Sequential``), old files stop fitting today's class: SB3's own ``load`` fails
on them with a strict ``load_state_dict`` error. Each row below names one such
change; ``fit_known_renames`` applies a row only when the file does not fit as
it is and the renamed tensors fit the rebuilt policy exactly (same names, same
shapes), so a rename can never make a wrong file load.

(SB3 < 1.8's shared actor-critic layers change ``net_arch`` as well as names:
``edgekit.host.loading.shared_layers``.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rename:
    """One known change of module names: ``pattern`` (a full-match regex on a tensor name) -> ``replacement``."""

    policies: tuple[str, ...]  # class names (or base class names) of today's policies it applies to
    pattern: str
    replacement: str
    saved_by: str  # the releases that wrote the old names, as measured on their files
    change: str  # what changed, in a few words

    def apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        regex = re.compile(self.pattern)
        return {regex.sub(self.replacement, key) if regex.fullmatch(key) else key: value
                for key, value in params.items()}

    def applies_to(self, policy: Any) -> bool:
        return any(cls.__name__ in self.policies for cls in type(policy).__mro__)


KNOWN_RENAMES: tuple[Rename, ...] = (
    Rename(
        policies=("ARSPolicy",),
        pattern=r"action_net\.(weight|bias)",
        replacement=r"action_net.0.\1",
        saved_by="sb3-contrib 1.3 (the RL Zoo's ARS LinearPolicy agents, saved by SB3 1.3.1a9)",
        change="ARSLinearPolicy's layer was a bare Linear named action_net; it is action_net.0 of a "
               "Sequential today",
    ),
)


def fit_known_renames(policy: Any, params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``params`` renamed by the one known rename that makes them fit ``policy`` exactly, and a line
    saying so; unchanged (and None) when they fit already or no rename makes them fit."""
    expected = policy.state_dict()
    if _fits(expected, params):
        return dict(params), None
    for rename in KNOWN_RENAMES:
        if not rename.applies_to(policy):
            continue
        renamed = rename.apply(params)
        if len(renamed) == len(params) and _fits(expected, renamed):
            changed = sorted(k for k in params if k not in renamed)
            return renamed, (f"policy.pth uses the tensor names of {rename.saved_by}: {rename.change}; "
                             f"renamed {', '.join(changed)}")
    return dict(params), None


def _fits(expected: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    return set(expected) == set(params) and all(
        tuple(params[k].shape) == tuple(v.shape) for k, v in expected.items())
