"""Stage: write the bundle's files and its manifest.

The bundle is self-describing: the manifest holds everything the device needs
and the sha256 of every file, so the runtime never guesses.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit.artifacts import Int8Model, LoadedAgent, ObservationSets, PolicyGraph
from edgekit.bundle.files import hash_tree
from edgekit.bundle.manifest import MANIFEST_NAME, Manifest, ModelEntry
from edgekit.env_spec import EnvSpec

CPU_MODEL = "model_int8.tflite"
EDGETPU_MODEL = "model_int8_edgetpu.tflite"
ONNX_MODEL = "policy.onnx"
CALIBRATION = "calibration.npz"
REPORT_JSON = "report.json"
VERIFY = "verify.npz"
VERIFY_SAMPLES = 256

_VERSIONED = ("stable-baselines3", "torch", "gymnasium", "onnx", "onnxruntime", "onnx2tf", "tensorflow",
              "ai-edge-litert", "numpy")


def stack_versions() -> dict[str, str]:
    """Versions of the build host's stack, for the manifest."""
    out = {"edgekit": __version__}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def save_observations(sets: ObservationSets, path: Path) -> None:
    """Calibration and held-out sets, kept so a report can be redone later."""
    np.savez_compressed(path, calibration=sets.calibration, held_out=sets.held_out)


def write_manifest(bundle_dir: Path, agent: LoadedAgent, graph: PolicyGraph, env: EnvSpec | str,
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
    (bundle_dir / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
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
    (bundle_dir / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Pretty JSON, refusing NaN (strict readers reject it)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
