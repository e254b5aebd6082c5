"""What a pickle may name, and what it may do with each name: the restricted unpickler's table.

Every global a pickle may name has one rule, decided by what the object can do
when built, never by where it lives:

* ``Reference``: named only (``activation_fn=nn.ReLU``, ``torch.float32``); calling,
  instantiating or updating it is refused;
* ``Call(check)``: may be called, with arguments ``check`` accepts. No check lets a
  size through that the pickle does not itself hold (``bytearray(n)`` with an int
  ``n`` is refused; ``bytearray(b"...")`` is fine), and no callable on the list
  calls anything the pickle gave it (numpy's random-state helpers, which call
  their second argument, are replaced by versions that build only numpy's own
  bit generators);
* ``Restore``: an instance may be created with ``cls.__new__(cls)`` (no
  constructor runs) and given a dict of attributes, as pickle restores a
  gymnasium space: its consistency is checked after loading.

The state a pickle gives an object (``BUILD``) is checked by the object's type
(``check_state``): arrays must carry exactly the bytes their shape and dtype
need, dtypes must be plain numbers. Light: numpy is imported only when a pickle
names it; torch only when it names a torch object.
"""

from __future__ import annotations

import importlib
import math
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_DIMS = 32  # numpy's own limit is 64
MAX_ITEMSIZE = 16  # complex128: the largest plain number
TORCH_DTYPES = ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool")
NUMPY_SCALAR_TYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                      "uint32", "uint64", "bool_")
ACTIVATIONS = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU", "GELU", "SiLU", "Mish", "Tanh",
               "Sigmoid", "Hardtanh", "Hardsigmoid", "Hardswish", "Softplus", "Softsign", "Tanhshrink", "LogSigmoid")
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam", "sgd": "SGD",
              "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta", "asgd": "ASGD", "rprop": "Rprop"}
SPACES = {"box": "Box", "discrete": "Discrete", "multi_discrete": "MultiDiscrete", "multi_binary": "MultiBinary",
          "dict": "Dict", "tuple": "Tuple"}
BIT_GENERATORS = {"MT19937": "_mt19937", "PCG64": "_pcg64", "PCG64DXSM": "_pcg64", "Philox": "_philox",
                  "SFC64": "_sfc64"}
TORCH_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|meta|hpu|xla|privateuseone)(:\d{1,2})?")
_DTYPE_CODE = re.compile(r"[<>|=]?([biufc]\d{1,2}|[?bBhHiIlLqQefdgFD])")


def refuse(reason: str) -> None:
    """Raise the unpickler's refusal (the caller names the file and field)."""
    raise pickle.UnpicklingError(reason)


@dataclass(frozen=True)
class Reference:
    """Named only: the object itself, never called, instantiated or updated."""

    load: Callable[[], Any]


@dataclass(frozen=True)
class Call:
    """May be called with the arguments ``check`` accepts (it raises otherwise); ``load`` gives the callable."""

    load: Callable[[], Any]
    check: Callable[[tuple[Any, ...]], None]


@dataclass(frozen=True)
class Restore:
    """May be created without running its constructor and given a dict of attributes."""

    load: Callable[[], Any]


Rule = Reference | Call | Restore


def attribute(module: str, name: str) -> Callable[[], Any]:
    """Import ``module`` when the pickle names it, not before."""

    def load() -> Any:
        try:
            found = importlib.import_module(module)
        except ImportError:
            if not module.startswith("numpy._core."):
                raise
            found = importlib.import_module("numpy.core." + module.split(".", 2)[2])  # numpy < 2
        return getattr(found, name)

    return load


def constant(value: Any) -> Callable[[], Any]:
    return lambda: value


# --- argument checks --------------------------------------------------------------------------------------

_CONTAINERS = (list, tuple, dict, set, frozenset, OrderedDict)
_SCALARS = (str, bytes, int, float, bool, type(None))


def _nothing_or_one_container(args: tuple[Any, ...]) -> None:
    """``list(x)``, ``dict(x)``...: from a container the pickle already holds, so no larger than it."""
    if len(args) > 1 or (args and type(args[0]) not in _CONTAINERS):
        refuse("a container may only be built from another container the pickle holds")


def _scalars(count: int) -> Callable[[tuple[Any, ...]], None]:
    def check(args: tuple[Any, ...]) -> None:
        if len(args) > count or not all(type(a) in _SCALARS for a in args):
            refuse("numbers and strings are built from numbers and strings only")

    return check


def _bytes_from_data(args: tuple[Any, ...]) -> None:
    """``bytearray(b"...")`` or ``bytearray("...", "latin-1")``, never ``bytearray(n)``: n zero bytes."""
    if not args:
        return
    data = args[0]
    if len(args) == 1 and type(data) in (bytes, bytearray):
        return
    if len(args) == 1 and type(data) in (list, tuple) and all(type(v) is int for v in data):
        return
    if len(args) == 2 and type(data) is str and args[1] in ("latin-1", "latin1"):
        return
    refuse("bytes may only be built from bytes or text the pickle holds, not from a size")


def _slice(args: tuple[Any, ...]) -> None:
    if len(args) > 3 or not all(a is None or type(a) is int for a in args):
        refuse("a slice takes up to three integers")


def _dtype_spec(args: tuple[Any, ...]) -> None:
    """``numpy.dtype("f4", False, True)``: plain numbers only (no objects, strings, records or sub-arrays)."""
    if not 1 <= len(args) <= 3 or type(args[0]) is not str or not _DTYPE_CODE.fullmatch(args[0]) \
            or not all(type(a) in (bool, int) and a in (0, 1) for a in args[1:]):  # older numpy: 0 and 1
        refuse(f"numpy.dtype({args[0]!r}...) is not a plain number type" if args else "numpy.dtype() without a type")
    plain_dtype(_numpy().dtype(args[0]))


def plain_dtype(dtype: Any) -> Any:
    """A numpy dtype of plain numbers (bool, integer, float, complex), or a refusal."""
    np = _numpy()
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or dtype.hasobject \
            or dtype.fields is not None or dtype.subdtype is not None or dtype.itemsize > MAX_ITEMSIZE:
        refuse(f"{dtype!r} is not a plain number dtype")
    return dtype


def _scalar(args: tuple[Any, ...]) -> None:
    """``numpy...scalar(dtype, data)``: a number whose bytes the pickle holds."""
    if len(args) != 2:
        refuse("a numpy scalar needs its dtype and its bytes")
    dtype, data = plain_dtype(args[0]), args[1]
    if type(data) not in (bytes, bytearray) or len(data) != dtype.itemsize:
        refuse("a numpy scalar's bytes must be exactly one value")


def _frombuffer(args: tuple[Any, ...]) -> None:
    """``numpy...frombuffer(buffer, dtype, shape, order)``: an array over bytes the pickle holds."""
    if len(args) != 4 or type(args[0]) not in (bytes, bytearray) or args[3] not in ("C", "F"):
        refuse("an array must be built over bytes the pickle holds")
    dtype = plain_dtype(args[1])
    if _elements(args[2]) * dtype.itemsize != len(args[0]):
        refuse("an array's shape does not match the bytes it holds")


def _torch_device(args: tuple[Any, ...]) -> None:
    """``torch.device("cpu")``, ``torch.device("cuda", 0)``: a name and an index, nothing allocated."""
    if not 1 <= len(args) <= 2 or type(args[0]) is not str or not TORCH_DEVICE.fullmatch(args[0]) \
            or (len(args) == 2 and (type(args[1]) is not int or not 0 <= args[1] < 64)):
        refuse("torch.device takes a device name and a small index")


def _seed_sequence(args: tuple[Any, ...]) -> None:
    """Cython's ``__pyx_unpickle_SeedSequence(SeedSequence, checksum, state)``: that class only."""
    if len(args) != 3 or args[0] is not attribute("numpy.random.bit_generator", "SeedSequence")() \
            or type(args[1]) is not int or not (args[2] is None or type(args[2]) is tuple):
        refuse("__pyx_unpickle_SeedSequence restores a SeedSequence only")


def _elements(shape: Any) -> int:
    if type(shape) is not tuple or len(shape) > MAX_DIMS or not all(type(v) is int and v >= 0 for v in shape):
        refuse(f"{shape!r} is not an array shape")
    return math.prod(shape)


# --- replacements: numpy's helpers without what they let a pickle do -----------------------------------


class NdarrayName:
    """Stands in for ``numpy.ndarray`` in a pickle: only ``reconstruct`` takes it (calling it fails)."""


def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's ``_reconstruct(ndarray, (0,), b"b")``, the empty array that its pickled state then fills
    (``check_state``: with exactly the bytes its shape needs); numpy writes no other arguments."""
    if subtype is not NdarrayName or type(shape) is not tuple or shape != (0,) \
            or type(dtype) not in (bytes, str) or dtype not in (b"b", "b"):
        refuse("_reconstruct takes numpy's placeholder arguments (ndarray, (0,), b'b') only")
    return _numpy().empty((0,), dtype=_numpy().int8)


def latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, and no other codec."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        refuse("_codecs.encode is allowed for latin-1 bytes only")
    return text.encode("latin-1")


def bit_generator_ctor(bit_generator: Any = "MT19937") -> Any:
    """numpy's ``__bit_generator_ctor``, which calls whatever class it is given: here only numpy's own bit
    generators, named or as their class."""
    for name, module in BIT_GENERATORS.items():
        cls = attribute(f"numpy.random.{module}", name)()
        if bit_generator == name or bit_generator is cls:
            return cls()
    refuse(f"{bit_generator!r} is not one of numpy's bit generators")


def generator_ctor(bit_generator: Any = "MT19937", bit_generator_ctor_: Any = None) -> Any:
    """numpy's ``__generator_ctor``, which calls its second argument: here never anything but
    ``bit_generator_ctor`` above."""
    return _numpy().random.Generator(_bit_generator(bit_generator, bit_generator_ctor_))


def randomstate_ctor(bit_generator: Any = "MT19937", bit_generator_ctor_: Any = None) -> Any:
    """numpy's ``__randomstate_ctor``, restricted like ``generator_ctor``."""
    return _numpy().random.RandomState(_bit_generator(bit_generator, bit_generator_ctor_))


def _bit_generator(given: Any, ctor: Any) -> Any:
    if ctor not in (None, bit_generator_ctor):
        refuse("a random generator may only be built by numpy's bit generator helper")
    if isinstance(given, _numpy().random.BitGenerator):
        return given
    return bit_generator_ctor(given)


def _any_args(_args: tuple[Any, ...]) -> None:
    """For the replacements above, which check their own arguments."""


# --- the state a pickle gives an object (BUILD) ----------------------------------------------------------


def check_state(instance: Any, state: Any, restorable: tuple[type, ...]) -> None:
    """Refuse a state that would make ``instance`` allocate more than the pickle holds, or any state for an
    object whose type does not take one."""
    np = _numpy_if_loaded()
    if np is not None and type(instance) is np.ndarray:
        _array_state(state)
    elif np is not None and isinstance(instance, np.dtype):
        _dtype_state(instance, state)
    elif isinstance(instance, restorable):
        attributes = state[0] if type(state) is tuple and len(state) == 2 and state[1] is None else state
        if type(attributes) is not dict or not all(type(k) is str for k in attributes):
            refuse(f"the state of a {type(instance).__name__} must be a dict of attributes")
    elif np is not None and isinstance(instance, _random_state_types(np)):
        return  # numpy checks the sizes of generator states itself (fixed-size keys and counters)
    else:
        refuse(f"a pickle may not set the state of a {type(instance).__name__}")


def _array_state(state: Any) -> None:
    """``(version, shape, dtype, is_fortran, data)``: plain numbers, exactly the bytes the shape needs."""
    if type(state) is not tuple or len(state) not in (4, 5):
        refuse("an array's state is not numpy's")
    shape, dtype, fortran, data = state[-4:]
    dtype = plain_dtype(dtype)
    if type(fortran) is not bool or type(data) not in (bytes, bytearray) \
            or _elements(shape) * dtype.itemsize != len(data):
        refuse("an array's state must hold exactly the bytes of its shape")


def _dtype_state(dtype: Any, state: Any) -> None:
    """numpy's ``(3, byte order, None, None, None, -1, -1, 0)`` for a plain number dtype."""
    plain_dtype(dtype)
    if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4) \
            or state[1] not in ("<", ">", "|", "=") or state[2:5] != (None, None, None) \
            or state[5] not in (-1, dtype.itemsize) or state[6] not in (-1, dtype.alignment) \
            or type(state[7]) is not int or state[7] != 0 or state[8:] not in ((), (None,)):
        refuse("a dtype's state may set its byte order only")


def _random_state_types(np: Any) -> tuple[type, ...]:
    bit_generator = importlib.import_module("numpy.random.bit_generator")
    return (np.random.Generator, np.random.RandomState, bit_generator.BitGenerator, bit_generator.SeedSequence)


def _numpy() -> Any:
    return importlib.import_module("numpy")


def _numpy_if_loaded() -> Any:
    import sys

    return sys.modules.get("numpy")


# --- the table ------------------------------------------------------------------------------------------


def _table() -> dict[tuple[str, str], Rule]:
    rules: dict[tuple[str, str], Rule] = {}
    for name in ("list", "tuple", "dict", "set", "frozenset"):
        rules[("builtins", name)] = Call(attribute("builtins", name), _nothing_or_one_container)
    for name in ("bytearray", "bytes"):
        rules[("builtins", name)] = Call(attribute("builtins", name), _bytes_from_data)
    for name, count in (("int", 2), ("float", 1), ("bool", 1), ("str", 1), ("complex", 2)):
        rules[("builtins", name)] = Call(attribute("builtins", name), _scalars(count))
    rules[("builtins", "slice")] = Call(attribute("builtins", "slice"), _slice)
    rules[("collections", "OrderedDict")] = Call(constant(OrderedDict), _nothing_or_one_container)
    rules[("_codecs", "encode")] = Call(constant(latin1_encode), _any_args)
    # numpy: dtypes, arrays and random-generator state (gymnasium spaces carry a generator)
    rules[("numpy", "dtype")] = Call(attribute("numpy", "dtype"), _dtype_spec)
    rules[("numpy", "ndarray")] = Reference(constant(NdarrayName))
    rules[("numpy._core.multiarray", "_reconstruct")] = Call(constant(reconstruct), _any_args)
    rules[("numpy._core.multiarray", "scalar")] = Call(attribute("numpy._core.multiarray", "scalar"), _scalar)
    rules[("numpy._core.numeric", "_frombuffer")] = Call(attribute("numpy._core.numeric", "_frombuffer"),
                                                         _frombuffer)
    for name in NUMPY_SCALAR_TYPES:
        rules[("numpy", name)] = Reference(attribute("numpy", name))
    rules[("numpy.random._pickle", "__bit_generator_ctor")] = Call(constant(bit_generator_ctor), _any_args)
    rules[("numpy.random._pickle", "__generator_ctor")] = Call(constant(generator_ctor), _any_args)
    rules[("numpy.random._pickle", "__randomstate_ctor")] = Call(constant(randomstate_ctor), _any_args)
    rules[("numpy.random.bit_generator", "SeedSequence")] = Reference(
        attribute("numpy.random.bit_generator", "SeedSequence"))
    rules[("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence")] = Call(
        attribute("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"), _seed_sequence)
    for name, module in BIT_GENERATORS.items():
        rules[(f"numpy.random.{module}", name)] = Reference(attribute(f"numpy.random.{module}", name))
    # gymnasium spaces: restored from their attributes, then checked (edgekit.host.loading.safe_load)
    for module, name in SPACES.items():
        rules[(f"gymnasium.spaces.{module}", name)] = Restore(attribute(f"gymnasium.spaces.{module}", name))
    # what policy_kwargs name: classes SB3 instantiates itself (activation_fn(), optimizer_class(params)),
    # and the harmless objects published zips carry (a device, dtypes)
    for name in ACTIVATIONS:
        rules[("torch.nn.modules.activation", name)] = Reference(attribute("torch.nn.modules.activation", name))
    rules[("torch.nn.modules.linear", "Identity")] = Reference(attribute("torch.nn.modules.linear", "Identity"))
    for module, name in OPTIMIZERS.items():
        rules[(f"torch.optim.{module}", name)] = Reference(attribute(f"torch.optim.{module}", name))
    rules[("torch", "device")] = Call(attribute("torch", "device"), _torch_device)
    for name in TORCH_DTYPES:
        rules[("torch", name)] = Reference(attribute("torch", name))
    rules[("stable_baselines3.common.sb2_compat.rmsprop_tf_like", "RMSpropTFLike")] = Reference(
        attribute("stable_baselines3.common.sb2_compat.rmsprop_tf_like", "RMSpropTFLike"))
    for name in ("FlattenExtractor", "NatureCNN", "CombinedExtractor"):  # features_extractor_class
        rules[("stable_baselines3.common.torch_layers", name)] = Reference(
            attribute("stable_baselines3.common.torch_layers", name))
    return rules


RULES: Mapping[tuple[str, str], Rule] = _table()

# The names older writers used for the same objects. An alias never widens the table: the renamed module
# must itself be on it.
MODULE_ALIASES: Mapping[str, str] = {
    "__builtin__": "builtins",
    "numpy.core.multiarray": "numpy._core.multiarray",
    "numpy.core.numeric": "numpy._core.numeric",
    # Zips saved under gym (SB3 < 2.0): the same spaces, rebuilt as gymnasium's without importing gym.
    **{f"gym.spaces.{module}": f"gymnasium.spaces.{module}" for module in SPACES},
}
