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

from edgekit.bundle.manifest import MAX_OBS_CLIP, MIN_POSITIVE, ObsNormalization
from edgekit.core.errors import ModelFileError
from edgekit.core.spaces import DICT, SpaceSpec
from edgekit.host.loading.pickle_rules import Restore, constant
from edgekit.host.loading.restricted_unpickle import restricted_loads

MAX_BYTES = 16 * 1024 * 1024
FILE_NAMES = ("vecnormalize.pkl", "vec_normalize.pkl")  # rl-zoo3 run folders; Hugging Face hub repos
UNCLIPPED = MAX_OBS_CLIP / 10  # stands for clip_obs=inf: 1e5 standard deviations
_HINT = "pass the vecnormalize.pkl saved with the model (VecNormalize.save), or --no-vecnormalize"


class _Holder:
    """Receives a pickled object's state as plain attributes (no methods of the original run)."""


STAND_INS = {  # restored from their pickled attributes; no method of SB3's classes runs
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"):
        Restore(constant(type("VecNormalizeState", (_Holder,), {}))),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"):
        Restore(constant(type("RunningMeanStdState", (_Holder,), {}))),
}


def load_vecnormalize(path: Path, observation: SpaceSpec | int) -> ObsNormalization | None:
    """Decode the statistics for the model's observation space (or a flat Box of that many features);
    None when the wrapper did not normalize observations.

    A Dict space keeps one ``RunningMeanStd`` per key and normalizes the keys in ``norm_obs_keys``
    (Box keys only, as SB3 requires): the result covers the flat features of
    ``edgekit.core.observations`` with the other features marked inactive.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"VecNormalize statistics {path} do not exist", hint="pass the vecnormalize.pkl saved "
                             "with the model, or --no-vecnormalize")
    if path.stat().st_size > MAX_BYTES:
        raise ModelFileError(f"{path} is too large for VecNormalize statistics")
    state = restricted_loads(path.read_bytes(), f"{path.name}", extra=STAND_INS, hint=_HINT)
    if not isinstance(state, _Holder):
        raise ModelFileError(f"{path} does not hold VecNormalize statistics")
    if not getattr(state, "norm_obs", True):
        return None
    epsilon = _number(state, "epsilon", 1e-8, path)
    clip = _number(state, "clip_obs", 10.0, path, infinite=True)
    if clip >= UNCLIPPED:  # clip_obs=np.inf turns clipping off: beyond this the int8 input saturated long before
        clip = UNCLIPPED
    if epsilon < 0:
        raise ModelFileError(f"{path} holds a negative epsilon ({epsilon:g}); VecNormalize adds it to a variance",
                             hint=_HINT)
    if clip <= 0:
        raise ModelFileError(f"{path} holds clip_obs {clip:g}; VecNormalize clips to a positive bound", hint=_HINT)
    rms = getattr(state, "obs_rms", None)
    if isinstance(observation, SpaceSpec) and observation.kind == DICT:
        return _dict_statistics(state, rms, observation, epsilon, clip, path)
    size = observation if isinstance(observation, int) else observation.size
    mean, std = _statistics(rms, size, epsilon, path, "obs_rms")
    return ObsNormalization(mean=tuple(mean.tolist()), std=tuple(std.tolist()), clip=clip)


def _dict_statistics(state: Any, rms: Any, space: SpaceSpec, epsilon: float, clip: float,
                     path: Path) -> ObsNormalization:
    """Per-feature statistics of a Dict observation: the keys in ``norm_obs_keys`` normalized, the rest not."""
    from edgekit.core.observations import ObservationEncoder

    keys = getattr(state, "norm_obs_keys", None)
    if not isinstance(rms, dict):
        raise ModelFileError(f"{path}: obs_rms is not a statistics per key, as VecNormalize keeps for a Dict space",
                             hint="pass the vecnormalize.pkl saved with this model")
    if keys is None:
        keys = list(rms)
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise ModelFileError(f"{path}: norm_obs_keys is not a list of key names")
    mean, std, active = [], [], []
    for key, sub, where in ObservationEncoder(space).layout():
        width = where.stop - where.start
        if key in keys:
            if sub.kind != "box" or key not in rms:
                raise ModelFileError(f"{path} normalizes key {key!r}, which is not a Box key with statistics",
                                     hint="pass the vecnormalize.pkl saved with this model")
            m, s = _statistics(rms[key], width, epsilon, path, f"obs_rms[{key!r}]")
            mean += m.tolist()
            std += s.tolist()
            active += [True] * width
        else:
            mean += [0.0] * width
            std += [1.0] * width
            active += [False] * width
    unknown = sorted(set(keys) - {key for key, _sub in space.spaces or ()})
    if unknown:
        raise ModelFileError(f"{path} normalizes keys {unknown} that the observation space does not have")
    return ObsNormalization(mean=tuple(mean), std=tuple(std), clip=clip, active=tuple(active))


def _statistics(rms: Any, size: int, epsilon: float, path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std = sqrt(var + epsilon)) of one RunningMeanStd, checked against ``size`` features."""
    mean, var = _array(rms, "mean", size, path, where), _array(rms, "var", size, path, where)
    if np.any(var < 0):
        raise ModelFileError(f"{path} holds invalid statistics (negative variance in {where})", hint=_HINT)
    std = np.sqrt(var + epsilon)
    if np.any(std < MIN_POSITIVE):
        raise ModelFileError(f"{path}: {where} has a feature of variance 0 and epsilon is 0, so VecNormalize would "
                             "divide by zero", hint=_HINT)
    return mean, std


def _array(rms: Any, name: str, size: int, path: Path, where: str = "obs_rms") -> np.ndarray:
    try:
        value = np.asarray(getattr(rms, name, None), dtype=np.float64).reshape(-1) if rms is not None else None
    except (TypeError, ValueError):
        raise ModelFileError(f"{path}: {where}.{name} is not an array of numbers", hint=_HINT) from None
    if value is None or value.size != size or not np.all(np.isfinite(value)):
        raise ModelFileError(f"{path}: {where}.{name} does not fit the model's {size} observation features",
                             hint="pass the vecnormalize.pkl saved with this model")
    return value


def _number(state: Any, name: str, default: float, path: Path, infinite: bool = False) -> float:
    value = getattr(state, name, default)
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool) \
            or np.isnan(value) or not (infinite or np.isfinite(value)):
        raise ModelFileError(f"{path}: {name} is not a {'' if infinite else 'finite '}number", hint=_HINT)
    return float(value)
