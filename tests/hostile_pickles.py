"""Hand-assembled hostile pickles: allocation gadgets for the restricted unpickler.

Written opcode by opcode (protocol 4) so that each says exactly what it asks the
unpickler to do, whatever the installed libraries would write themselves.
``gadgets(size)`` names each one; ``size`` is the allocation it tries to cause.
"""

from __future__ import annotations

import base64
import json
import struct
import zipfile
from pathlib import Path

PROTO = b"\x80\x04"
STOP = b"."
MARK = b"("


def text(value: str) -> bytes:
    raw = value.encode()
    return (b"\x8c" + bytes([len(raw)]) if len(raw) < 256 else b"X" + len(raw).to_bytes(4, "little")) + raw


def number(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + value.to_bytes(4, "little", signed=True)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def blob(raw: bytes) -> bytes:
    return b"C" + bytes([len(raw)]) + raw if len(raw) < 256 else b"B" + len(raw).to_bytes(4, "little") + raw


def name(module: str, attribute: str) -> bytes:
    return text(module) + text(attribute) + b"\x93"


def items(*parts: bytes) -> bytes:
    return b"".join(parts)


def tuple_of(*parts: bytes) -> bytes:
    return MARK + items(*parts) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    return func + tuple_of(*args) + b"R"


def new(cls: bytes, *args: bytes) -> bytes:
    return cls + tuple_of(*args) + b"\x81"


def new_ex(cls: bytes, *args: bytes) -> bytes:
    return cls + tuple_of(*args) + b"}" + b"\x92"


def build(obj: bytes, state: bytes) -> bytes:
    return obj + state + b"b"


def inst(module: str, attribute: str, *args: bytes) -> bytes:
    return MARK + items(*args) + b"i" + module.encode() + b"\n" + attribute.encode() + b"\n"


def obj(cls: bytes, *args: bytes) -> bytes:
    return MARK + cls + items(*args) + b"o"


def dict_of(**entries: bytes) -> bytes:
    return b"}" + MARK + b"".join(text(k) + v for k, v in entries.items()) + b"u"


def whole(body: bytes) -> bytes:
    return PROTO + body + STOP


BYTEARRAY = name("builtins", "bytearray")
PRELU = name("torch.nn.modules.activation", "PReLU")
GENERATOR_CTOR = name("numpy.random._pickle", "__generator_ctor")
RANDOMSTATE_CTOR = name("numpy.random._pickle", "__randomstate_ctor")
BIT_GENERATOR_CTOR = name("numpy.random._pickle", "__bit_generator_ctor")
DTYPE = name("numpy", "dtype")
NDARRAY = name("numpy", "ndarray")
RECONSTRUCT = name("numpy.core.multiarray", "_reconstruct")
SCALAR = name("numpy.core.multiarray", "scalar")
FROMBUFFER = name("numpy._core.numeric", "_frombuffer")
BOX = name("gymnasium.spaces.box", "Box")
F8 = call(DTYPE, text("f8"), b"\x89", b"\x88")


def floating(value: float) -> bytes:
    return b"G" + struct.pack(">d", value)


def array(values: list[float]) -> bytes:
    """A float64 numpy array, as protocol 5 writes one (``_frombuffer`` over its bytes)."""
    return call(FROMBUFFER, blob(struct.pack(f"<{len(values)}d", *values)), F8, tuple_of(number(len(values))),
                text("C"))


def vecnormalize(mean: bytes, var: bytes, epsilon: bytes, clip: bytes) -> bytes:
    """VecNormalize statistics as SB3 pickles them (only what edgekit reads)."""
    rms = build(new(name("stable_baselines3.common.running_mean_std", "RunningMeanStd")),
                dict_of(mean=mean, var=var, count=floating(100.0)))
    state = dict_of(obs_rms=rms, epsilon=epsilon, clip_obs=clip, norm_obs=b"\x88")
    return whole(build(new(name("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize")), state))


def gadgets(size: int) -> dict[str, bytes]:
    """Each pickle asks for about ``size`` bytes (or elements) through a different door."""
    n = number(size)
    side = number(int(size**0.5) + 1)
    return {
        # the two: bytearray(n) and numpy's helper calling a class it is handed
        "bytearray(n)": whole(call(BYTEARRAY, n)),
        "__generator_ctor(n, PReLU)": whole(call(GENERATOR_CTOR, number(size // 4), PRELU)),
        "__randomstate_ctor(n, PReLU)": whole(call(RANDOMSTATE_CTOR, number(size // 4), PRELU)),
        "__generator_ctor(n, bytearray)": whole(call(GENERATOR_CTOR, n, BYTEARRAY)),
        "__bit_generator_ctor(PReLU)": whole(call(BIT_GENERATOR_CTOR, PRELU)),
        "bytes(n)": whole(call(name("builtins", "bytes"), n)),
        "bytes.__new__(bytes, n)": whole(new(name("builtins", "bytes"), n)),
        "bytearray.__new__ via NEWOBJ_EX": whole(new_ex(BYTEARRAY, n)),
        "INST bytearray n": whole(inst("builtins", "bytearray", n)),
        "OBJ bytearray n": whole(obj(BYTEARRAY, n)),
        "list(str)": whole(call(name("builtins", "list"), text("x" * 200))),
        "tuple(bytearray(n))": whole(call(name("builtins", "tuple"), call(BYTEARRAY, n))),
        "OrderedDict(n)": whole(call(name("collections", "OrderedDict"), n)),
        "PReLU(n)": whole(call(PRELU, n)),
        "Box(0, 1, (n,))": whole(call(BOX, number(0), number(1), tuple_of(n))),
        "NEWOBJ Box(0, 1, (n,))": whole(new(BOX, number(0), number(1), tuple_of(n))),
        "NEWOBJ PReLU + BUILD": whole(build(new(PRELU), dict_of(num_parameters=n))),
        "torch.device(n)": whole(call(name("torch", "device"), n)),
        "numpy.dtype(V n)": whole(call(DTYPE, text(f"V{size}"))),
        "scalar(dtype V n)": whole(call(SCALAR, call(DTYPE, text(f"V{size}")), blob(b""))),
        "scalar(dtype with elsize n)": whole(call(SCALAR, build(call(DTYPE, text("V8")), tuple_of(
            number(3), text("|"), b"N", b"N", b"N", n, number(1), number(0))))),
        "dtype state elsize n": whole(build(F8, tuple_of(number(3), text("<"), b"N", b"N", b"N", n, number(8),
                                                         number(0)))),
        "object dtype": whole(call(DTYPE, text("O8"))),
        "_reconstruct(ndarray, (n,), f8)": whole(call(RECONSTRUCT, NDARRAY, tuple_of(n), F8)),
        "array state (n, n) without data": whole(build(call(RECONSTRUCT, NDARRAY, tuple_of(number(0)), blob(b"b")),
                                                       tuple_of(number(1), tuple_of(side, side), F8, b"\x89",
                                                                blob(b"")))),
        "array state of objects": whole(build(call(RECONSTRUCT, NDARRAY, tuple_of(number(0)), blob(b"b")),
                                              tuple_of(number(1), tuple_of(n), call(DTYPE, text("O8")), b"\x89",
                                                       b"]"))),
        "_frombuffer(b'', f8, (n,))": whole(call(FROMBUFFER, blob(b""), F8, tuple_of(n), text("C"))),
        "APPENDS onto a bytearray": whole(call(BYTEARRAY, blob(b"x")) + MARK + number(1) + b"e"),
        "SETITEMS onto a Box": whole(new(BOX) + MARK + text("low") + n + b"u"),
        "BUILD a class": whole(build(PRELU, dict_of(num_parameters=n))),
        "int from a long text": whole(call(name("builtins", "int"), text("9" * 5000))),
        "str(bytearray(n))": whole(call(name("builtins", "str"), call(BYTEARRAY, n))),
        "memo index 2**31": PROTO + text("x") + b"r" + (2**31).to_bytes(4, "little") + STOP,
        "BINBYTES8 longer than the pickle": PROTO + b"\x8e" + size.to_bytes(8, "little") + b"xx" + STOP,
    }


def serialized(payload: bytes) -> dict[str, str]:
    """A data JSON field as SB3 writes a pickled one."""
    return {":type:": "<class 'object'>", ":serialized:": base64.b64encode(payload).decode()}


def with_field(model: Path, target: Path, field: str, payload: bytes) -> Path:
    """A copy of ``model`` whose pickled ``field`` is ``payload``."""
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            raw = src.read(item)
            if item.filename == "data":
                data = json.loads(raw)
                old = data.get(field) if isinstance(data.get(field), dict) else {}
                data[field] = {**old, **serialized(payload)}  # SB3's readable keys beside it stay
                raw = json.dumps(data).encode()
            dst.writestr(item, raw)
    return target
