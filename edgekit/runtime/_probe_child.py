"""The probe's child process: open one model with a TFLite interpreter and invoke it once.

Run by ``edgekit.runtime.probe`` as ``python _probe_child.py '<json arguments>'``,
never imported. It imports the standard library, numpy and the interpreter
package, nothing of edgekit (the test suite checks the list), so that what it
proves is about the model, the interpreter and libedgetpu alone. It prints one
JSON line per stage before entering it (``{"stage": "invoke"}``), so that when
native code kills it the parent knows where, then one result line:
``{"ok": true}`` or ``{"ok": false, "error": ...}`` (exit 3).
"""

import sys

del sys.path[0]  # this file's directory (edgekit/runtime) must shadow no module the interpreter imports

import json  # noqa: E402
import os  # noqa: E402

FAILED = 3


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _interpreter_api(name: str) -> tuple:
    """(Interpreter class, load_delegate) of the interpreter package ``name``."""
    if name == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.load_delegate
    if name == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter, load_delegate
    elif name == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    else:
        raise ValueError(f"unknown interpreter package {name!r}")
    return Interpreter, load_delegate


def _valid_input(detail: dict, numpy: object) -> object:
    """An input of the tensor's shape and type: its zero point (the quantized 0.0) everywhere."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    value = zero_point if scale else 0
    return numpy.full(tuple(int(d) for d in detail["shape"]), value, dtype=detail["dtype"])


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the process that started it dies (a hang must not outlive it)."""
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _content(path: str, sha256: str) -> bytes:
    """The model's bytes, which must be those the parent hashed (a file swapped meanwhile is refused)."""
    import hashlib

    with open(path, "rb") as fh:
        content = fh.read()
    if sha256 and hashlib.sha256(content).hexdigest() != sha256:
        raise ValueError(f"{path} changed after the parent checked it")
    return content


def main(args: dict) -> None:
    _die_with_parent()
    _say(stage="import")
    import numpy

    interpreter_class, load_delegate = _interpreter_api(args["interpreter"])
    delegates = []
    library = args.get("library")
    if library:
        _say(stage="library")  # dlopen runs the library's initialisers
        import ctypes

        ctypes.CDLL(library)
        _say(stage="delegate")
        delegates.append(load_delegate(library, args.get("options") or {}))
    _say(stage="load")
    kwargs = {"model_content": _content(args["model"], args.get("sha256")), "num_threads": 1}
    if delegates:
        kwargs["experimental_delegates"] = delegates
    interpreter = interpreter_class(**kwargs)
    _say(stage="allocate")
    interpreter.allocate_tensors()
    _say(stage="invoke")
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _valid_input(detail, numpy))
    interpreter.invoke()
    for detail in interpreter.get_output_details():
        interpreter.get_tensor(detail["index"])
    result = {"ok": True}
    if args.get("report_modules"):
        result["modules"] = sorted({name.split(".")[0] for name in sys.modules})
    _say(**result)


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    try:
        main(arguments)
    except Exception as exc:  # every failure is the parent's to word; a native crash never gets here
        message = " ".join(str(exc).split()) or type(exc).__name__
        _say(ok=False, error=f"{type(exc).__name__}: {message}"[:2000])
        sys.exit(FAILED)
