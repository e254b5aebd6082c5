"""Observations as the env returns them <-> the flat float features the network reads.

SB3 turns an observation into network input in ``preprocess_obs``
(``stable_baselines3/common/preprocessing.py``) and the features extractor:

* ``Box``: cast to float (any dtype), flattened;
* ``Discrete(n)``: a one-hot vector of ``n`` floats;
* ``MultiDiscrete(nvec)``: one one-hot per branch, concatenated (``sum(nvec)`` floats);
* ``MultiBinary``: cast to float (0/1), flattened;
* ``Dict`` (``CombinedExtractor`` of ``nn.Flatten`` per key): each key as above, concatenated in the
  space's key order.

``ObservationEncoder`` does exactly that, in numpy, on the host and on the device:
the int8 model takes the flat features (one int8 input tensor whatever the
space), so one-hot, concatenation and key order happen here, before
quantization. ``binary`` marks the features that only take 0 and 1 (one-hots
and MultiBinary): the conditioning stage gives them a fixed map onto exact int8
levels. ``decode`` inverts ``encode`` (bundles store the flat features; host
tools hand SB3 the observations back). ``Encoding`` is the manifest's
description of the same layout. Light: numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.errors import BundleError, InputError
from edgekit.core.spaces import BOX, DICT, DISCRETE, MULTI_BINARY, MULTI_DISCRETE, SpaceSpec

FLOAT, ONE_HOT, BINARY = "float", "one_hot", "binary"  # how a part becomes features
PART_KINDS = (FLOAT, ONE_HOT, BINARY)
NOT_FINITE = "observation contains NaN or infinity"
_PART_OF_SPACE = {BOX: FLOAT, DISCRETE: ONE_HOT, MULTI_DISCRETE: ONE_HOT, MULTI_BINARY: BINARY}


@dataclass(frozen=True)
class EncodingPart:
    """One space (or one key of a Dict) and the features it becomes."""

    key: str | None  # the Dict key; None for a plain space
    kind: str  # float | one_hot | binary
    features: int
    classes: tuple[int, ...] = ()  # one_hot: classes per branch (Discrete: one branch)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "kind": self.kind, "features": self.features}
        if self.kind == ONE_HOT:
            out["classes"] = list(self.classes)
        return out


def encoding_of(space: SpaceSpec) -> tuple[EncodingPart, ...]:
    """The feature layout SB3's preprocessing gives ``space``."""
    if space.kind == DICT:
        return tuple(_part(key, sub) for key, sub in space.spaces or ())
    return (_part(None, space),)


def encoding_to_list(parts: tuple[EncodingPart, ...]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in parts]


def check_encoding(raw: Any, space: SpaceSpec) -> tuple[EncodingPart, ...]:
    """The manifest's ``preprocess.encoding`` must state what the observation space implies (absent in
    bundles written before it existed: then it is implied)."""
    expected = encoding_of(space)
    ObservationEncoder(space)  # refuses what the encoder cannot run (a non-zero Discrete start)
    if raw is None:
        if space.kind != BOX:
            raise BundleError("manifest: preprocess.encoding is missing for a non-Box observation space")
        return expected
    if raw != encoding_to_list(expected):
        raise BundleError("manifest: preprocess.encoding does not match the observation space")
    return expected


def _part(key: str | None, space: SpaceSpec) -> EncodingPart:
    kind = _PART_OF_SPACE.get(space.kind)
    if kind is None:
        raise BundleError(f"manifest: {space.kind} cannot be part of a dict observation")
    classes = (int(space.n or 0),) if space.kind == DISCRETE else tuple(space.nvec or ()) \
        if space.kind == MULTI_DISCRETE else ()
    return EncodingPart(key=key, kind=kind, features=space.features, classes=classes)


class _Codec:
    """Encode / decode one non-Dict space (a Dict is a list of these)."""

    def __init__(self, space: SpaceSpec, where: str) -> None:
        if space.kind in (DISCRETE, MULTI_DISCRETE) and (space.start or 0) != 0:
            raise BundleError(f"manifest: {where} has a non-zero start (SB3's one-hot does not support it)")
        self.space = space
        self.where = where
        self.shape = space.shape  # one observation's shape; Discrete: ()
        self.features = space.features
        self.classes = np.asarray((space.n,) if space.kind == DISCRETE else space.nvec or (), dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.classes)[:-1]]).astype(np.int64) \
            if self.classes.size else np.zeros(0, dtype=np.int64)
        self.dtype = np.dtype(space.dtype) if space.dtype else np.dtype(np.float32)

    def batch(self, observation: Any) -> tuple[np.ndarray, bool]:
        """(values (B, *shape), single) with SB3's rule: exactly the space's shape is one observation,
        one more leading dimension is a batch."""
        try:
            values = np.asarray(observation)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"observation{self.where} is not numeric: {exc}") from None
        if values.dtype.kind not in "biuf":
            kind = "not numeric" if values.dtype.kind in "OUSV" else f"of dtype {values.dtype}"
            raise InputError(f"observation{self.where} is {kind}")
        if values.shape == self.shape:
            return values.reshape(1, *self.shape), True
        if values.ndim == len(self.shape) + 1 and values.shape[1:] == self.shape:
            return values, False
        dims = ", ".join(map(str, self.shape))
        raise InputError(f"observation{self.where} shape {values.shape} does not fit the policy's {self.shape} "
                         f"(or a batch (B{', ' if dims else ''}{dims}))")

    def encode(self, values: np.ndarray, out: np.ndarray) -> None:
        """Write the features of ``values`` (B, *shape) into ``out`` (B, features)."""
        rows = len(values)
        kind = self.space.kind
        if kind in (BOX, MULTI_BINARY):
            flat = values.reshape(rows, -1).astype(np.float32)
            if not np.isfinite(flat).all():
                raise InputError(NOT_FINITE)
            if kind == MULTI_BINARY and not np.isin(flat, (0.0, 1.0)).all():
                raise InputError(f"observation{self.where} must hold only 0 and 1 (MultiBinary)")
            out[:] = flat
            return
        index = self._indices(values.reshape(rows, -1))
        out[:] = 0.0
        out[np.arange(rows)[:, None], self.offsets[None, :] + index] = 1.0

    def _indices(self, values: np.ndarray) -> np.ndarray:
        """Class indices (B, branches), checked: integers in [0, n) per branch."""
        if values.dtype.kind == "f":
            if not np.isfinite(values).all():
                raise InputError(NOT_FINITE)
            if not np.all(values == np.floor(values)):
                raise InputError(f"observation{self.where} must hold integers ({self.space.describe()})")
        if np.any(values < 0) or np.any(values >= self.classes[None, :]):
            raise InputError(f"observation{self.where} is outside {self.space.describe()}")
        return values.astype(np.int64)

    def decode(self, features: np.ndarray) -> np.ndarray:
        """Observations (B, *shape) in the space's dtype (float32 for a Box) from features (B, features)."""
        rows = len(features)
        kind = self.space.kind
        if kind == BOX:
            return features.astype(np.float32).reshape(rows, *self.shape)
        if kind == MULTI_BINARY:
            return features.reshape(rows, *self.shape).astype(self.dtype)
        branches = [np.argmax(features[:, o:o + n], axis=1) for o, n in zip(self.offsets, self.classes)]
        index = np.stack(branches, axis=1).astype(self.dtype)
        return index.reshape(rows, *self.shape)


class ObservationEncoder:
    """SB3's observation preprocessing for one observation space, as numpy (see the module docstring)."""

    def __init__(self, space: SpaceSpec) -> None:
        self.space = space
        self.parts = encoding_of(space)
        if space.kind == DICT:
            self.keys: tuple[str, ...] | None = tuple(key for key, _sub in space.spaces or ())
            self._codecs = [_Codec(sub, f"[{key!r}]") for key, sub in space.spaces or ()]
        else:
            self.keys = None
            self._codecs = [_Codec(space, "")]
        self.features = sum(c.features for c in self._codecs)
        bounds = np.cumsum([0] + [c.features for c in self._codecs])
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self.binary = np.concatenate([np.full(c.features, c.space.kind != BOX) for c in self._codecs])
        self.identity = space.kind == BOX  # features are the observation, flattened

    def layout(self) -> list[tuple[str | None, SpaceSpec, slice]]:
        """(Dict key or None, space, feature slice) of each part, in feature order."""
        keys = self.keys or (None,)
        return [(key, codec.space, part) for key, codec, part in zip(keys, self._codecs, self._slices)]

    def encode(self, observation: Any) -> tuple[np.ndarray, bool]:
        """(features (B, F) float32, single): one observation, or a batch, as the env returns it."""
        if self.keys is None:
            values, single = self._codecs[0].batch(observation)
            out = np.empty((len(values), self.features), dtype=np.float32)
            self._codecs[0].encode(values, out)
            return out, single
        if not isinstance(observation, Mapping):
            raise InputError(f"observation must be a dict with the keys {list(self.keys)}")
        missing = [k for k in self.keys if k not in observation]
        extra = [k for k in observation if k not in self.keys]
        if missing or extra:
            what = f"lacks {missing}" if missing else f"has unknown keys {[str(k) for k in extra][:5]}"
            raise InputError(f"observation {what}; the policy takes the keys {list(self.keys)}")
        batches = [c.batch(observation[k]) for k, c in zip(self.keys, self._codecs)]
        singles = {single for _values, single in batches}
        rows = {len(values) for values, _single in batches}
        if len(singles) > 1 or len(rows) > 1:
            raise InputError("observation keys mix single observations and batches (or batch sizes)")
        out = np.empty((rows.pop(), self.features), dtype=np.float32)
        for (values, _single), codec, part in zip(batches, self._codecs, self._slices):
            codec.encode(values, out[:, part])
        return out, singles.pop()

    def decode(self, features: np.ndarray) -> Any:
        """A batch of observations as the env returns them (a dict of batches for a Dict space), from flat
        features (B, F), e.g. a bundle's stored held-out set: the exact inverse of ``encode``."""
        features = np.asarray(features, dtype=np.float32).reshape(-1, self.features)
        decoded = [c.decode(features[:, part]) for c, part in zip(self._codecs, self._slices)]
        if self.keys is None:
            return decoded[0]
        return dict(zip(self.keys, decoded))

    def normalized(self, observation: Any, normalize: Any) -> Any:
        """``observation`` (one, or a batch, as the env returns it) as the policy saw it behind VecNormalize
        (``ObsNormalization``: its normalized features changed, one-hots and other keys as they are)."""
        features, single = self.encode(observation)
        seen = self.decode(normalize.apply(features))
        if not single:
            return seen
        return {k: v[0] for k, v in seen.items()} if isinstance(seen, dict) else seen[0]

    def feature_names(self) -> list[str]:
        """One name per feature: ``obs[i]``, ``obs==k`` (one-hot), ``obs[i]==k``; Dict keys replace ``obs``."""
        names: list[str] = []
        for codec, part in zip(self._codecs, self.parts):
            base = "obs" if part.key is None else part.key
            kind = codec.space.kind
            if kind == DISCRETE:
                names += [f"{base}=={k}" for k in range(int(codec.classes[0]))]
            elif kind == MULTI_DISCRETE:
                names += [f"{base}[{i}]=={k}" for i, n in enumerate(codec.classes) for k in range(int(n))]
            elif len(codec.shape) <= 1:
                names += [f"{base}[{i}]" for i in range(codec.features)]
            else:
                names += [f"{base}[{','.join(map(str, idx))}]" for idx in np.ndindex(*codec.shape)]
        return names

    def groups(self) -> list[tuple[str, str, slice]]:
        """(name, kind, feature slice) of each one-hot branch and each binary part: the discrete inputs."""
        out = []
        for codec, part, where in zip(self._codecs, self.parts, self._slices):
            base = "obs" if part.key is None else part.key
            if codec.space.kind == DISCRETE:
                out.append((base, ONE_HOT, where))
            elif codec.space.kind == MULTI_DISCRETE:
                for i, (o, n) in enumerate(zip(codec.offsets, codec.classes)):
                    out.append((f"{base}[{i}]", ONE_HOT, slice(where.start + int(o), where.start + int(o + n))))
            elif codec.space.kind == MULTI_BINARY:
                out.append((base, BINARY, where))
        return out

    def sample(self, rng: np.random.Generator, count: int, box_limit: float = 10.0) -> Any:
        """``count`` random observations of the space (Box bounds clipped to ±``box_limit``), batched."""
        batches = [_sample(c, rng, count, box_limit) for c in self._codecs]
        return batches[0] if self.keys is None else dict(zip(self.keys, batches))


def _sample(codec: _Codec, rng: np.random.Generator, count: int, limit: float) -> np.ndarray:
    space = codec.space
    if space.kind == BOX:
        low = np.clip(space.low_array(), -limit, limit)
        high = np.clip(space.high_array(), -limit, limit)
        values = rng.uniform(low, high, size=(count, *space.shape))
        if codec.dtype.kind in "iub":
            values = np.rint(values)
        return values.astype(np.float32)
    if space.kind == MULTI_BINARY:
        return rng.integers(0, 2, size=(count, *space.shape)).astype(codec.dtype)
    index = rng.integers(0, codec.classes[None, :], size=(count, len(codec.classes)))
    return index.reshape(count, *space.shape).astype(codec.dtype)
