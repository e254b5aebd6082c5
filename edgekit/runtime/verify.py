"""On-device verification: does this device compute what the build host computed?

The build stores a sample of held-out observations with the int8 model's
outputs on the host (``verify.npz``). Kernels differ by a few int8 steps
between TFLite's XNNPACK and reference kernels, and the Edge TPU rounds
differently again, so the comparison has a tolerance stated in output steps.
Numpy and the interpreter only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.files import verify_all, verify_file
from edgekit.errors import BundleError
from edgekit.runtime.policy import EdgePolicy

VERIFY_FILE = "verify.npz"
DEFAULT_TOLERANCE_STEPS = 3


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

    @property
    def passed(self) -> bool:
        return self.max_steps <= self.tolerance_steps

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


def verify_bundle(bundle_dir: Path, device: str = "auto", interpreter: str | None = None,
                  tolerance_steps: float = DEFAULT_TOLERANCE_STEPS) -> VerifyResult:
    """Check every file's sha256, then compare outputs on this device with the host's."""
    policy = EdgePolicy.load(bundle_dir, device=device, interpreter=interpreter)
    files = verify_all(bundle_dir, policy.manifest)
    path = verify_file(bundle_dir, policy.manifest, VERIFY_FILE)
    try:
        with np.load(path, allow_pickle=False) as data:
            obs = np.asarray(data["observations"], dtype=np.float32)
            host_outputs = np.asarray(data["outputs"], dtype=np.float32)
    except (KeyError, ValueError, OSError) as exc:
        raise BundleError(f"{VERIFY_FILE} is unreadable: {exc}") from None
    if len(obs) != len(host_outputs) or len(obs) == 0:
        raise BundleError(f"{VERIFY_FILE} holds mismatched or empty arrays")
    obs = obs.reshape(-1, *policy.observation_shape)
    step = policy.entry.output.quant.scale
    outputs = policy.predict_outputs(obs)
    steps = np.abs(outputs - host_outputs) / step
    host_actions = policy._post(host_outputs)
    mismatches = int(np.sum(np.any((policy.predict(obs) != host_actions).reshape(len(obs), -1), axis=1)))
    return VerifyResult(device=policy.device, interpreter=policy.backend.name, files_checked=len(files),
                        samples=len(obs), max_steps=float(steps.max()), mean_steps=float(steps.mean()),
                        action_mismatches=mismatches, tolerance_steps=float(tolerance_steps))
