"""Open a model first where a crash cannot take the caller down: a probe in a child process.

A TFLite interpreter trusts the model and the delegate it is given. A
libedgetpu built against another TensorFlow than the interpreter kills the
process that creates its delegate (SIGSEGV, tensorflow/tensorflow#62371); a
model file with one op code swapped passes every structural check and then
crashes the kernels, or makes ``invoke()`` raise. Neither can be caught in the
process it happens in. So before the serving process opens a model, a child
process (``_probe_child.py``: numpy and the interpreter, nothing else) does
what the server will do: loads libedgetpu and creates the delegate for the
requested device (Edge TPU models), loads the model, allocates, invokes once
on a valid input, all within a timeout. A signal death, a hang, a NULL
delegate or an exception becomes a ``ProbeResult`` that says where and why,
and ``ProbeResult.error()`` the ``DeviceError`` (Edge TPU) or ``BundleError``
(CPU model) the caller raises.

A child that cannot start at all (a user-mode emulator without binfmt_misc:
set ``EDGEKIT_PROBE_LAUNCHER`` to the emulator's command) is a ``DeviceError``
too: nothing is opened unprobed.

A success is cached per (model sha256, interpreter package + version + Python
+ machine, libedgetpu file sha256, device) in ``$EDGEKIT_PROBE_CACHE``, else
``$XDG_CACHE_HOME/edgekit/probes``, else ``~/.cache/edgekit/probes``, so a
restart costs a file read; a failure is never cached. An unwritable cache
only costs the next start another probe.

``probe_model`` is the public entry point (``edgekit doctor`` calls it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle.layout import write_text_atomic
from edgekit.core.errors import BundleError, DeviceError, EdgekitError, UsageError
from edgekit.runtime.interpreters import Backend, DeviceRequest, find_backend
from edgekit.runtime.libedgetpu import FIX_PAIR, LibraryFile, find_libedgetpu, library_file

CHILD = Path(__file__).with_name("_probe_child.py")
DEFAULT_TIMEOUT_S = 30.0  # a first USB open loads the Coral's firmware (a few seconds); a hang waits this long
TIMEOUT_ENV = "EDGEKIT_PROBE_TIMEOUT"
CACHE_ENV = "EDGEKIT_PROBE_CACHE"
LAUNCHER_ENV = "EDGEKIT_PROBE_LAUNCHER"  # a command the child runs under, e.g. a user-mode emulator
CACHE_FORMAT = 1  # bump when what a probe proves changes: older entries stop matching
_CHILD_FAILED = 3
# A child that could not be executed: glibc's posix_spawn (Python 3.13's subprocess) reports a failed exec as
# this exit status, not as an OSError, when the emulator it runs under does not share the parent's memory with
# the child (qemu-user without binfmt_misc); env and shells use it for a missing command.
_NOT_EXECUTED = 127

# outcomes
OK, CACHED, CRASHED, TIMED_OUT, NO_DELEGATE, FAILED, NO_LIBRARY, NOT_STARTED = (
    "ok", "cached", "crashed", "timed-out", "no-delegate", "failed", "no-library", "not-started")
_DELEGATE_PREFIX = re.compile(r"^ValueError: Failed to load delegate from \S+\s*")
_STAGES = {
    "import": "importing the interpreter",
    "library": "loading libedgetpu",
    "delegate": "creating its delegate (tflite_plugin_create_delegate)",
    "load": "loading the model",
    "allocate": "allocating its tensors",
    "invoke": "invoking it",
}


@dataclass(frozen=True)
class ProbeResult:
    """What a probe of one model found. ``ok``: the model opened and ran once where it was probed."""

    ok: bool
    outcome: str  # ok | cached | crashed | timed-out | no-delegate | failed | no-library | not-started
    model: str
    model_sha256: str
    device: str  # "cpu", or the Edge TPU asked for: "auto" (any), "usb", "usb:0", "pci", ...
    interpreter: str  # "ai_edge_litert 2.3.0"
    library: str | None  # the libedgetpu probed, with its package version (None for the CPU)
    stage: str | None  # where it failed: import | library | delegate | load | allocate | invoke
    detail: str  # one line: what happened
    seconds: float

    @property
    def cached(self) -> bool:
        return self.outcome == CACHED

    @property
    def edgetpu(self) -> bool:
        return self.device != "cpu"

    def error(self) -> EdgekitError | None:
        """The error a caller raises for a failed probe (None when it passed)."""
        if self.ok:
            return None
        if self.outcome == NOT_STARTED:
            return DeviceError(f"cannot start the process that opens {Path(self.model).name} first: {self.detail}",
                               hint=f"under a user-mode emulator without binfmt_misc, set {LAUNCHER_ENV} to the "
                               "emulator's command (e.g. 'qemu-aarch64-static -L ROOT')")
        if self.edgetpu:
            return _device_error(self)
        name, rebuild = Path(self.model).name, "rebuild the bundle with `edgekit build`, or copy it again"
        if self.outcome in (CRASHED, TIMED_OUT):
            verb = "crashed" if self.outcome == CRASHED else "hung"
            return BundleError(f"{name} {verb} the interpreter in a probe ({self.detail}) with {self.interpreter}: "
                               "the model is damaged or crafted; this process did not open it", hint=rebuild)
        return BundleError(f"{name} failed in a probe {self.detail} with {self.interpreter}; this process did not "
                           "open it", hint=f"{rebuild}; a model that needs a newer interpreter needs that "
                           "interpreter (device/README.md)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_model(model: str | Path, device: str = "cpu", interpreter: str | None = None,
                library: str | None = None, timeout: float | None = None, use_cache: bool = True) -> ProbeResult:
    """Probe ``model`` (a .tflite file) in a child process and return what happened: a crash, a hang or an
    error in the child is a result, not an exception (only bad arguments raise: UsageError, or
    MissingDependencyError when no interpreter is installed).

    ``device``: ``cpu`` (no delegate) or the Edge TPU to open it on (``auto`` for any, ``usb[:N]``,
    ``pci[:N]``). ``interpreter``: the interpreter package (default: the first installed, as ``EdgePolicy``
    picks). ``library``: the libedgetpu file (default: ``$EDGEKIT_LIBEDGETPU``, else where the loader
    would find it). ``timeout``: seconds (default ``$EDGEKIT_PROBE_TIMEOUT``, else 30).
    """
    path = Path(model)
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    request = DeviceRequest.parse(device)
    backend = find_backend(interpreter)
    lib: LibraryFile | None = None
    if request.kind != "cpu":
        try:
            lib = find_libedgetpu() if library is None else library_file(library)
        except DeviceError as exc:
            return ProbeResult(False, NO_LIBRARY, str(path), digest, str(request), _name(backend), None, None,
                               exc.message, 0.0)
    return run_probe(backend, path, digest, request, lib, timeout, use_cache)


def run_probe(backend: Backend, model: Path, sha256: str, request: DeviceRequest, library: LibraryFile | None,
              timeout: float | None = None, use_cache: bool = True) -> ProbeResult:
    """``probe_model`` for callers that have already found the interpreter and the library (EdgePolicy)."""
    device = "cpu" if request.kind == "cpu" else str(request)
    if device != "cpu" and library is None:
        raise ValueError("an Edge TPU probe needs the libedgetpu file")
    timeout = probe_timeout() if timeout is None else timeout
    key = _cache_key(backend, sha256, device, library) if use_cache else None
    base = dict(model=str(model), model_sha256=sha256, device=device, interpreter=_name(backend),
                library=library.describe() if library else None)
    if key is not None and _cached(key):
        return ProbeResult(ok=True, outcome=CACHED, stage=None, detail="passed an earlier probe", seconds=0.0,
                           **base)
    outcome, stage, detail, seconds = _run_child(backend, model, sha256, request, library, timeout)
    result = ProbeResult(ok=outcome == OK, outcome=outcome, stage=stage, detail=detail, seconds=seconds, **base)
    if result.ok and key is not None:
        _remember(key, seconds)
    return result


def probe_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1e6:
        raise UsageError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds", hint=f"unset {TIMEOUT_ENV} or "
                         "give a positive number")
    return value


# --- the child process --------------------------------------------------------------------------------


def child_arguments(backend: Backend, model: Path, request: DeviceRequest, library: LibraryFile | None,
                    report_modules: bool = False, sha256: str | None = None) -> list[str]:
    """The command line of the probe's child (``sha256``: the bytes it must find in ``model``)."""
    import shlex

    args: dict[str, Any] = {"interpreter": backend.name, "model": str(model), "sha256": sha256,
                            "report_modules": report_modules}
    if library is not None:
        args["library"] = library.path
        args["options"] = {"device": request.delegate_device} if request.delegate_device else {}
    launcher = shlex.split(os.environ.get(LAUNCHER_ENV, ""))
    return [*launcher, sys.executable, str(CHILD), json.dumps(args)]


def _run_child(backend: Backend, model: Path, sha256: str, request: DeviceRequest, library: LibraryFile | None,
               timeout: float) -> tuple[str, str | None, str, float]:
    """(outcome, stage, detail, seconds) of one child run."""
    import subprocess

    start = time.monotonic()
    try:
        proc = subprocess.Popen(child_arguments(backend, model, request, library, sha256=sha256),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except (OSError, ValueError) as exc:  # no executable, exec format error (emulation), no memory, a bad launcher
        return NOT_STARTED, None, str(exc), time.monotonic() - start
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        stdout, stderr = _kill(proc)
    except BaseException:  # Ctrl-C while waiting: take the child down too
        _kill(proc)
        raise
    seconds = time.monotonic() - start
    stage, result = _read_lines(stdout)
    where = _STAGES.get(stage, str(stage)) if stage else "starting"
    if timed_out:
        return TIMED_OUT, stage, f"no answer within {timeout:g} s while {where}", seconds
    if proc.returncode < 0:
        return CRASHED, stage, f"{_signal_name(-proc.returncode)} while {where}", seconds
    if proc.returncode == _NOT_EXECUTED and stage is None:  # it never ran a line of the child
        why = _tail(stderr) or "the command could not be executed (no error shown: posix_spawn under an emulator)"
        return NOT_STARTED, None, f"exit status 127 before it started: {why}", seconds
    if proc.returncode == 0 and result.get("ok"):
        return OK, None, "opened and ran once", seconds
    error = str(result.get("error") or _tail(stderr) or f"exit status {proc.returncode}")
    if len(error) > 300:
        error = error[:297] + "..."
    if stage == "delegate":  # load_delegate's ValueError: "Failed to load delegate from PATH" + the callback's
        return NO_DELEGATE, stage, _DELEGATE_PREFIX.sub("", error) or "no reason given", seconds
    return FAILED, stage, f"while {where}: {error}", seconds


def _kill(proc: Any) -> tuple[bytes, bytes]:
    with contextlib.suppress(OSError):
        proc.kill()  # SIGKILL: a child stuck in native code runs no handler (it starts no process of its own)
    return proc.communicate()


def _read_lines(stdout: bytes) -> tuple[str | None, dict[str, Any]]:
    """The last stage the child entered and its result line."""
    stage, result = None, {}
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if isinstance(fields, dict) and "stage" in fields:
            stage = str(fields["stage"])
        elif isinstance(fields, dict) and "ok" in fields:
            result = fields
    return stage, result


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _name(backend: Backend) -> str:
    return f"{backend.name} {backend.version}"


def _device_error(result: ProbeResult) -> DeviceError:
    where = f"libedgetpu {result.library or '(not found)'} with {result.interpreter}"
    if result.outcome == NO_LIBRARY:
        return DeviceError(result.detail, hint=FIX_PAIR)
    if result.outcome == NO_DELEGATE:
        return DeviceError(f"libedgetpu could not open the Edge TPU ({result.device}): {result.detail} ({where})",
                           hint="plug the Coral in (check `edgekit doctor`: USB IDs, udev rule, power); if it is "
                           f"there, {FIX_PAIR}")
    what = {CRASHED: f"the Edge TPU runtime crashed a probe process ({result.detail})",
            TIMED_OUT: f"the Edge TPU ({result.device}) did not answer a probe ({result.detail})"}.get(
        result.outcome, f"the Edge TPU model failed in a probe {result.detail}")
    return DeviceError(f"{what}: {where}; this process loaded neither", hint=FIX_PAIR)


# --- the cache ----------------------------------------------------------------------------------------


def probe_cache_dir() -> Path:
    """Where successful probes are remembered."""
    explicit = os.environ.get(CACHE_ENV, "")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "edgekit" / "probes"


def _cache_key(backend: Backend, sha256: str, device: str, library: LibraryFile | None) -> dict[str, Any] | None:
    import platform

    try:
        library_id = library.identity() if library is not None else None
    except OSError:
        return None
    return {"format": CACHE_FORMAT, "model_sha256": sha256, "interpreter": backend.name,
            "interpreter_version": backend.version, "python": platform.python_version(),
            "machine": platform.machine(), "device": device, "libedgetpu_sha256": library_id}


def _cache_file(key: dict[str, Any]) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return probe_cache_dir() / f"{name}.json"


def _cached(key: dict[str, Any]) -> bool:
    try:
        entry = json.loads(_cache_file(key).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(entry, dict) and entry.get("key") == key and entry.get("ok") is True


def _remember(key: dict[str, Any], seconds: float) -> None:
    """Write the entry atomically; a cache that cannot be written is skipped (the next start probes again)."""
    target = _cache_file(key)
    entry = {"key": key, "ok": True, "seconds": round(seconds, 3), "probed_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, json.dumps(entry))
    except OSError:
        return
