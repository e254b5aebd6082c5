"""Stage: write the bundle's files and its manifest.

The bundle is self-describing: the manifest holds everything the device needs
and the sha256 of every file, so the runtime never guesses.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.layout import CPU_MODEL, hash_tree, write_manifest
from edgekit.bundle.manifest import Manifest, ModelEntry
from edgekit.core.env_spec import EnvSpec
from edgekit.host.loading.loaded_agent import LoadedAgent
from edgekit.host.stack_versions import stack_versions
from edgekit.stages.artifacts import Int8Model, ObservationSets, PolicyGraph

VERIFY_SAMPLES = 256

def save_observations(sets: ObservationSets, path: Path) -> None:
    """Calibration and held-out sets, kept so a report can be redone later."""
    np.savez_compressed(path, calibration=sets.calibration, held_out=sets.held_out)


def write_new_manifest(bundle_dir: Path, agent: LoadedAgent, graph: PolicyGraph, env: EnvSpec | str,
                   int8: Int8Model, sets: ObservationSets, conditioning: dict[str, Any] | None = None,
                   created: str | None = None) -> Manifest:
    """Hash every file in ``bundle_dir`` and write ``manifest.json``."""
    models = {"cpu": ModelEntry(file=CPU_MODEL, input=int8.input, output=int8.output)}
    spec = env if isinstance(env, EnvSpec) else EnvSpec(env)
    manifest = Manifest(
        env_id=spec.id,
        env=spec,
        algorithm=agent.algorithm.name,
        observation_space=agent.observation_space,
        action_space=agent.action_space,
        output=graph.output,
        postprocess=graph.postprocess,
        preprocess=int8.preprocess,
        models=models,
        files=hash_tree(bundle_dir),
        source={
            "file": agent.path.name,
            "sha256": agent.sha256,
            "algorithm": agent.algorithm.name,
            "policy_class": agent.policy_class,
            "sb3_version": agent.sb3_version,
        },
        versions=stack_versions(),
        calibration=dict(sets.facts),
        conditioning=dict(conditioning or {}),
        created=created or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    write_manifest(bundle_dir, manifest)
    return manifest


def save_verification(sets: ObservationSets, int8_outputs: np.ndarray, path: Path, spread_steps: float) -> None:
    """Held-out observations with the host's int8 outputs, for ``edgekit verify`` on the device, and
    how far the host's own two kernel sets disagree on them (in output steps)."""
    n = min(VERIFY_SAMPLES, len(sets.held_out))
    np.savez_compressed(path, observations=sets.held_out[:n], outputs=int8_outputs[:n].astype(np.float32),
                        kernel_spread_steps=np.float64(spread_steps))


def refresh_hashes(bundle_dir: Path) -> Manifest:
    """Re-hash every file into the manifest after files were added (report, compiled model)."""
    manifest = replace(Manifest.read(bundle_dir), files=hash_tree(bundle_dir))
    write_manifest(bundle_dir, manifest)
    return manifest


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Pretty JSON, refusing NaN (strict readers reject it)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
