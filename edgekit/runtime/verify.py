"""On-device verification: does this device compute what the build host computed?

The build stores a sample of held-out observations with the int8 model's
outputs on the host (``verify.npz``). Kernels differ by a few int8 steps
between TFLite's XNNPACK and reference kernels, and the Edge TPU rounds
differently again, so the comparison has a tolerance stated in output steps.
An action may differ from the host's only as far as that tolerance explains
(a Box action within the post-processing of outputs ``tolerance`` steps
away, a discrete one only at a near-tie); a non-finite action, or one the
tolerance does not explain, fails the check however close the outputs are.
Numpy and the interpreter only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.files import verify_all, verify_file
from edgekit.bundle.layout import VERIFY as VERIFY_FILE
from edgekit.core.errors import BundleError
from edgekit.core.postprocess import ARGMAX, MULTI_ARGMAX, PostProcessor
from edgekit.runtime.policy import EdgePolicy

DEFAULT_TOLERANCE_STEPS = 3  # at least; a bundle records its own kernels' spread, which may be larger
SPREAD_FACTOR = 2  # allow twice the spread between the build host's two kernel sets


@dataclass(frozen=True)
class VerifyResult:
    device: str
    interpreter: str
    files_checked: int
    samples: int
    max_steps: float
    mean_steps: float
    action_mismatches: int
    tolerance_steps: float
    unexplained_mismatches: int = 0  # actions the output tolerance does not explain (NaN included)
    non_finite_actions: int = 0

    @property
    def passed(self) -> bool:
        return bool(self.max_steps <= self.tolerance_steps) and self.unexplained_mismatches == 0 \
            and self.non_finite_actions == 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


def kernel_spread_steps(policy: EdgePolicy, observations: np.ndarray) -> float:
    """Largest difference, in output steps, between the optimized (XNNPACK) kernels ``policy`` runs
    and TFLite's reference kernels on the same int8 inputs: how much two correct interpreters may
    disagree on this model (trained tanh networks amplify a one-step rounding difference)."""
    reference = policy.backend.interpreter(str(policy.bundle_dir / policy.model_file), plain=True)
    reference.allocate_tensors()
    in_detail, out_detail = reference.get_input_details()[0], reference.get_output_details()[0]
    worst = 0
    for q in policy.quantize_observations(policy.observations_of(observations)):
        reference.set_tensor(in_detail["index"], q.reshape(in_detail["shape"]))
        reference.invoke()
        ref = reference.get_tensor(out_detail["index"]).astype(np.int32).reshape(-1)
        fast = policy.invoke_int8(q).astype(np.int32).reshape(-1)
        worst = max(worst, int(np.abs(ref - fast).max()))
    return float(worst)


def default_tolerance(spread_steps: float) -> float:
    """The tolerance `verify` uses unless told otherwise."""
    return max(float(DEFAULT_TOLERANCE_STEPS), SPREAD_FACTOR * spread_steps)


def verify_bundle(bundle_dir: Path, device: str = "auto", interpreter: str | None = None,
                  tolerance_steps: float | None = None) -> VerifyResult:
    """Check every file's sha256, then compare outputs on this device with the host's.

    Default tolerance: 3 steps, or twice the build host's own kernel spread if that is larger.
    """
    policy = EdgePolicy.load(bundle_dir, device=device, interpreter=interpreter)
    files = verify_all(bundle_dir, policy.manifest)
    path = verify_file(bundle_dir, policy.manifest, VERIFY_FILE)
    try:
        with np.load(path, allow_pickle=False) as data:
            obs = np.asarray(data["observations"], dtype=policy.observation_dtype)  # images: uint8
            host_outputs = np.asarray(data["outputs"], dtype=np.float32)
            spread = float(data["kernel_spread_steps"]) if "kernel_spread_steps" in data.files else 0.0
    except (KeyError, ValueError, OSError) as exc:
        raise BundleError(f"{VERIFY_FILE} is unreadable: {exc}") from None
    if tolerance_steps is None:
        tolerance_steps = default_tolerance(spread)
    if len(obs) != len(host_outputs) or len(obs) == 0:
        raise BundleError(f"{VERIFY_FILE} holds mismatched or empty arrays")
    count = len(obs)
    obs = policy.observations_of(obs)  # stored as flat features; predict takes them as the env returns them
    step = policy.entry.output.quant.scale
    outputs = policy.predict_outputs(obs)
    steps = np.abs(outputs - host_outputs) / step
    host_actions = policy._post(host_outputs)
    actions = policy.predict(obs)
    differ = np.any((actions != host_actions).reshape(count, -1), axis=1)
    finite = np.isfinite(actions.astype(np.float64)).reshape(count, -1).all(axis=1)
    explained = explained_by_tolerance(policy._post, host_outputs, actions, tolerance_steps * step)
    return VerifyResult(device=policy.device, interpreter=policy.backend.name, files_checked=len(files),
                        samples=count, max_steps=float(steps.max()), mean_steps=float(steps.mean()),
                        action_mismatches=int(differ.sum()), tolerance_steps=float(tolerance_steps),
                        unexplained_mismatches=int(np.sum(differ & ~explained)),
                        non_finite_actions=int(np.sum(~finite)))


def explained_by_tolerance(post: PostProcessor, host_outputs: np.ndarray, actions: np.ndarray,
                           tolerance: float) -> np.ndarray:
    """Per sample: could outputs within ``tolerance`` of the host's (as this device may compute them) give
    ``actions``? Clip, unscale and threshold are monotone per output, so each action value must lie between
    the post-processing of the host output minus and plus the tolerance; an argmax (per branch) may only pick
    an output within twice the tolerance of the host's best. NaN is never explained."""
    count = len(host_outputs)
    if post.kind in (ARGMAX, MULTI_ARGMAX):
        branches = post.branches if post.kind == MULTI_ARGMAX else [(0, host_outputs.shape[1])]
        picks = np.asarray(actions, dtype=np.int64).reshape(count, -1) - (post.start if post.kind == ARGMAX else 0)
        ok = np.ones(count, dtype=bool)
        for b, (lo, hi) in enumerate(branches):
            width = hi - lo
            pick = picks[:, b]
            inside = (pick >= 0) & (pick < width)
            chosen = np.take_along_axis(host_outputs[:, lo:hi], np.clip(pick, 0, width - 1)[:, None], axis=1)[:, 0]
            ok &= inside & (chosen >= host_outputs[:, lo:hi].max(axis=1) - 2 * tolerance)
        return ok
    low = post(host_outputs - tolerance).reshape(count, -1).astype(np.float64)
    high = post(host_outputs + tolerance).reshape(count, -1).astype(np.float64)
    values = np.asarray(actions, dtype=np.float64).reshape(count, -1)
    slack = 1e-6 * np.maximum(1.0, np.abs(values))  # float32 rounding of the post-processing
    with np.errstate(invalid="ignore"):
        return np.all((values >= low - slack) & (values <= high + slack), axis=1)
