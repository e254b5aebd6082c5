"""A pickle reader that builds only an explicit list of harmless classes.

SB3 stores the spaces and ``policy_kwargs`` of a model as cloudpickle inside
the zip's ``data`` JSON. ``pickle.loads`` imports and calls whatever a pickle
names, so opening a model that way can run any code its author chose. This
reader checks every global a pickle names against ``ALLOWED`` before anything
is imported; any other name raises :class:`UnsafePickleError`.

The list holds only what builds data: gymnasium spaces, numpy arrays, dtypes
and random-generator state, the torch activation and optimizer classes and
SB3's flatten, NatureCNN and combined (Dict) extractors (as class references, for
``policy_kwargs``), and plain containers. No ``getattr``, ``eval``, ``exec``, ``os``, ``subprocess``,
``builtins.__import__``, ``builtins.open``...

Only numpy's reconstruction helpers and plain containers may be *called*
(``REDUCE``); the other names may be referenced (``activation_fn=nn.ReLU``) or
rebuilt from their pickled state without running their constructor (how
pickle restores a space), so a pickle cannot, say, call ``Box(0, 1, (10**9,))``
and make edgekit allocate gigabytes. This check needs the Python
implementation of the unpickler (its ``REDUCE`` can be intercepted); the
pickles read here are a few kilobytes.

``MODULE_ALIASES`` maps the names older writers used onto the same classes
today (``numpy.core`` -> ``numpy._core``; ``gym.spaces`` -> ``gymnasium.spaces``,
whose spaces read gym's pickled state). An alias never widens the list: the
renamed module must itself be allowed.
"""

from __future__ import annotations

import importlib
import io
import pickle
import pickletools
from collections.abc import Callable, Mapping
from typing import Any

from edgekit.errors import ModelFileError, UnsafePickleError

MAX_ARRAY_ELEMENTS = 1 << 24  # an observation-space bound is tiny; refuse to allocate more
MAX_MEMO_INDEX = 1 << 16  # the C unpickler grows its memo table to the largest index it is given

_SPACES = {"box": "Box", "discrete": "Discrete", "multi_discrete": "MultiDiscrete", "multi_binary": "MultiBinary",
           "dict": "Dict", "tuple": "Tuple"}

ALLOWED: Mapping[str, frozenset[str]] = {
    "builtins": frozenset({"dict", "list", "tuple", "set", "frozenset", "slice", "bytearray", "bytes", "complex",
                           "float", "int", "bool", "str"}),
    "collections": frozenset({"OrderedDict"}),
    "_codecs": frozenset({"encode"}),  # bytes in protocol-2 pickles; replaced by a latin-1-only decoder
    "numpy": frozenset({"dtype", "ndarray"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "numpy.random._pickle": frozenset({"__generator_ctor", "__bit_generator_ctor", "__randomstate_ctor"}),
    "numpy.random.bit_generator": frozenset({"SeedSequence", "__pyx_unpickle_SeedSequence"}),
    "numpy.random._pcg64": frozenset({"PCG64", "PCG64DXSM"}),
    "numpy.random._mt19937": frozenset({"MT19937"}),
    "numpy.random._philox": frozenset({"Philox"}),
    "numpy.random._sfc64": frozenset({"SFC64"}),
    **{f"gymnasium.spaces.{module}": frozenset({name}) for module, name in _SPACES.items()},
    "torch.nn.modules.activation": frozenset({
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU", "GELU", "SiLU", "Mish", "Tanh",
        "Sigmoid", "Hardtanh", "Hardsigmoid", "Hardswish", "Softplus", "Softsign", "Tanhshrink", "LogSigmoid"}),
    "torch.nn.modules.linear": frozenset({"Identity"}),
    **{f"torch.optim.{module}": frozenset({name}) for module, name in {
        "adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam", "sgd": "SGD",
        "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta", "asgd": "ASGD", "rprop": "Rprop",
    }.items()},
    "stable_baselines3.common.sb2_compat.rmsprop_tf_like": frozenset({"RMSpropTFLike"}),
    # features_extractor_class in policy_kwargs (MultiInputPolicy's default is CombinedExtractor): references only
    "stable_baselines3.common.torch_layers": frozenset({"FlattenExtractor", "NatureCNN", "CombinedExtractor"}),
}

# What a pickle may call: helpers that only rebuild data. Everything else in ALLOWED is reference-only.
CALLABLE: frozenset[tuple[str, str]] = frozenset({
    *(("builtins", name) for name in ALLOWED["builtins"]),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    *(("numpy.random._pickle", name) for name in ALLOWED["numpy.random._pickle"]),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
})

MODULE_ALIASES: Mapping[str, str] = {
    "__builtin__": "builtins",
    "numpy.core.multiarray": "numpy._core.multiarray",
    "numpy.core.numeric": "numpy._core.numeric",
    # Zips saved under gym (SB3 < 2.0): the same spaces, rebuilt as gymnasium's without importing gym.
    **{f"gym.spaces.{module}": f"gymnasium.spaces.{module}" for module in _SPACES},
}


class _NdarrayClass:
    """Stands in for ``numpy.ndarray`` in a pickle: only ``_reconstruct`` accepts it (calling it fails)."""


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's ``_reconstruct`` for plain arrays of a bounded size (the data follows in ``__setstate__``)."""
    import numpy as np

    if subtype is not _NdarrayClass:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(isinstance(v, int) and v >= 0 for v in shape) \
            or int(np.prod(shape, dtype=np.float64)) > MAX_ARRAY_ELEMENTS:
        raise pickle.UnpicklingError(f"array shape {shape!r} is not a small array's")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, and no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed for latin-1 bytes only")
    return text.encode("latin-1")


_REPLACEMENTS: Mapping[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves allow-listed names only and calls only ``CALLABLE`` ones."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, payload: bytes, where: str, extra: Mapping[tuple[str, str], Any] | None = None) -> None:
        super().__init__(io.BytesIO(payload))
        self.where = where
        self.extra = dict(extra or {})
        self.callables: dict[int, str] = {}  # id of each resolved callable -> its name

    def find_class(self, module: str, name: str) -> Any:
        canonical = MODULE_ALIASES.get(module, module)
        if (canonical, name) in self.extra:
            return self.extra[(canonical, name)]
        if name not in ALLOWED.get(canonical, ()):
            raise UnsafePickleError(
                f"{self.where} refers to {module}.{name}, which edgekit does not load from a pickle "
                "(unpickling a class or function can run code)"
            )
        replacement = _REPLACEMENTS.get((canonical, name))
        value = replacement if replacement is not None else getattr(_import(canonical), name)
        if (canonical, name) in CALLABLE:
            self.callables[id(value)] = f"{module}.{name}"
        return value

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are not allowed")

    def _call(self, func: Any, args: Any) -> Any:
        if id(func) not in self.callables:
            what = getattr(func, "__qualname__", type(func).__name__)
            raise UnsafePickleError(f"{self.where} calls {what}, which edgekit lets a pickle name but not call")
        return func(*args)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    dispatch[pickle.REDUCE[0]] = _load_reduce

    def _instantiate(self, klass: Any, args: Any) -> None:
        """INST and OBJ (protocols 0 and 1): a constructor call unless pickle would only use ``__new__``."""
        if args or not isinstance(klass, type) or hasattr(klass, "__getinitargs__"):
            self.append(self._call(klass, args))
        else:
            self.append(klass.__new__(klass))


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        if module.startswith("numpy._core."):  # numpy < 2 names the same module numpy.core
            return importlib.import_module("numpy.core." + module.split(".", 2)[2])
        raise


def _prescan(payload: bytes) -> None:
    """Parse the opcodes without running them: a damaged or hostile length or memo index fails here
    instead of making the unpickler allocate gigabytes."""
    for op, arg, _pos in pickletools.genops(payload):
        if op.name.endswith(("PUT", "GET")) and isinstance(arg, int) and not 0 <= arg < MAX_MEMO_INDEX:
            raise pickle.UnpicklingError(f"memo index {arg} is out of range")


def restricted_loads(payload: bytes, where: str, extra: Mapping[tuple[str, str], Any] | None = None,
                     check: Callable[[Any], None] | None = None) -> Any:
    """Decode one pickle with the allow-list; ``where`` names it in errors (e.g. "model.zip's action_space")."""
    try:
        _prescan(payload)
        value = RestrictedUnpickler(payload, where, extra).load()
        if check is not None:
            check(value)
        return value
    except ModelFileError:  # UnsafePickleError included: it names the class
        raise
    except ImportError as exc:
        raise ModelFileError(f"{where} needs a module that is not installed ({exc.name})",
                             hint="install edgekit-sb3[host]") from None
    except Exception as exc:  # a damaged pickle fails anywhere inside the unpickler or a constructor
        raise ModelFileError(f"{where} could not be decoded ({type(exc).__name__}: {short_message(exc)})") from None


def short_message(exc: BaseException, limit: int = 160) -> str:
    """An exception's text on one line, cut to ``limit`` characters (errors are one line)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
