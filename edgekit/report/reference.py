"""The float side of the comparison: the bundle's ``policy.onnx`` and, when given, the SB3 model.

``policy.onnx`` is the *conditioned* actor (see ``edgekit.stages.condition``):
it takes preprocessed observations and emits the int8 model's raw outputs in
float, so it is the reference for raw-output and per-layer error. The SB3
model is the reference for actions: it is what the user trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.files import verify_file
from edgekit.bundle.layout import ONNX_MODEL
from edgekit.bundle.manifest import Manifest, Preprocess
from edgekit.core.errors import MissingDependencyError, UsageError


def conditioned_inputs(obs: np.ndarray, preprocess: Preprocess, step: float | None = None) -> np.ndarray:
    """Flat observations as policy.onnx takes them (the manifest's preprocessing); ``step``: the int8
    input step to split with, so that the float model sees exactly what the int8 model is fed."""
    return preprocess.model_inputs(obs) if step is None else preprocess.model_inputs(obs, step)


def ort_session(model: str | bytes) -> Any:
    """A single-threaded CPU onnxruntime session on a path or serialized model."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime is not installed", hint="pip install 'edgekit-sb3[host]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run_rows(session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``session`` row by row (the exported batch size is 1); one (B, size) array per output."""
    rows = len(next(iter(feeds.values())))
    outputs: list[list[np.ndarray]] = [[] for _ in session.get_outputs()]
    for i in range(rows):
        result = session.run(None, {name: value[i:i + 1] for name, value in feeds.items()})
        for store, value in zip(outputs, result):
            store.append(np.asarray(value, dtype=np.float32).reshape(-1))
    return [np.stack(store) for store in outputs]


def onnx_outputs(bundle_dir: Path, manifest: Manifest, obs: np.ndarray) -> np.ndarray:
    """The conditioned float actor's raw outputs (B, K) for flat observations (B, N)."""
    session = ort_session(str(verify_file(bundle_dir, manifest, ONNX_MODEL)))
    name = session.get_inputs()[0].name
    return run_rows(session, {name: conditioned_inputs(obs, manifest.preprocess)})[0]


def load_sb3_agent(model_path: Path, manifest: Manifest) -> Any:
    """Load the SB3 model the bundle was built from (checked by sha256 and spaces)."""
    from edgekit.host.loading import load_agent

    agent = load_agent(Path(model_path))
    built_from = manifest.source.get("sha256")
    if built_from and agent.sha256 != built_from:
        raise UsageError(
            f"{model_path} is not the model this bundle was built from (sha256 differs)",
            hint=f"pass the model.zip the bundle was built from ({manifest.source.get('file', 'see manifest.json')})",
        )
    if (agent.observation_space.describe(), agent.action_space.describe()) != (
            manifest.observation_space.describe(), manifest.action_space.describe()):
        raise UsageError(f"{model_path} does not have the bundle's observation and action spaces",
                         hint="pass the model.zip the bundle was built from")
    return agent


def policy_raw_outputs(agent: Any, manifest: Manifest, features: np.ndarray) -> np.ndarray:
    """The SB3 policy's own raw outputs (B, K) (Q-values, logits) for the flat features of observations
    (a bundle's stored sets), before edgekit's conditioning rewrote them: the actor the build extracted."""
    from edgekit.stages.extract import extract_policy

    graph = extract_policy(agent, manifest.preprocess.normalize, manifest.preprocess.image)
    return graph.outputs(features).astype(np.float64)
