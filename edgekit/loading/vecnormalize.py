"""VecNormalize statistics: the observation normalization a policy was trained with.

rl-zoo3 saves ``vecnormalize.pkl`` beside the model (``ENV/ENV.zip`` with
``ENV/vecnormalize.pkl``); a policy used without it sees observations on the
wrong scale, the most common reason an exported SB3 policy misbehaves. The
pickle is decoded with the restricted unpickler: SB3's ``VecNormalize`` and
``RunningMeanStd`` are replaced by plain attribute holders, so no code of theirs
(or anyone's) runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.manifest import ObsNormalization
from edgekit.errors import ModelFileError
from edgekit.loading.restricted_unpickle import restricted_loads

MAX_BYTES = 16 * 1024 * 1024
FILE_NAMES = ("vecnormalize.pkl", "vec_normalize.pkl")  # rl-zoo3 run folders; Hugging Face hub repos


class _Holder:
    """Receives a pickled object's state as plain attributes (no methods of the original run)."""


_STAND_INS = {
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"): type("VecNormalizeState", (_Holder,), {}),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"): type("RunningMeanStdState", (_Holder,), {}),
}


def load_vecnormalize(path: Path, obs_size: int) -> ObsNormalization | None:
    """Decode the statistics; None when the wrapper did not normalize observations."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"VecNormalize statistics {path} do not exist", hint="pass the vecnormalize.pkl saved "
                             "with the model, or --no-vecnormalize")
    if path.stat().st_size > MAX_BYTES:
        raise ModelFileError(f"{path} is too large for VecNormalize statistics")
    state = restricted_loads(path.read_bytes(), f"{path.name}", extra=_STAND_INS)
    if not isinstance(state, _Holder):
        raise ModelFileError(f"{path} does not hold VecNormalize statistics")
    if not getattr(state, "norm_obs", True):
        return None
    rms = getattr(state, "obs_rms", None)
    mean, var = _array(rms, "mean", obs_size, path), _array(rms, "var", obs_size, path)
    epsilon, clip = _number(state, "epsilon", 1e-8, path), _number(state, "clip_obs", 10.0, path)
    if np.any(var < 0) or clip <= 0:
        raise ModelFileError(f"{path} holds invalid statistics (negative variance or clip)")
    std = np.sqrt(var + epsilon)
    return ObsNormalization(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), clip=float(clip))


def _array(rms: Any, name: str, size: int, path: Path) -> np.ndarray:
    value = np.asarray(getattr(rms, name, None), dtype=np.float64).reshape(-1) if rms is not None else None
    if value is None or value.size != size or not np.all(np.isfinite(value)):
        raise ModelFileError(f"{path}: obs_rms.{name} does not fit the model's {size} observation features",
                             hint="pass the vecnormalize.pkl saved with this model")
    return value


def _number(state: Any, name: str, default: float, path: Path) -> float:
    value = getattr(state, name, default)
    if not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ModelFileError(f"{path}: {name} is not a number")
    return float(value)
