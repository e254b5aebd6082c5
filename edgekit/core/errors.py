"""The one exception hierarchy of edgekit.

Every error a user can cause or meet carries a ``hint``: one sentence that says
how to fix it. The CLI prints ``error: <message>`` and ``  fix: <hint>`` and
exits non-zero; ``EDGEKIT_DEBUG=1`` adds the traceback. Light on purpose: the
device runtime imports it.
"""

from __future__ import annotations

import errno
import os
import tempfile


class EdgekitError(Exception):
    """Base of every error edgekit raises on purpose."""

    exit_code: int = 1
    default_hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class UsageError(EdgekitError):
    """Bad command-line arguments or option values."""

    exit_code = 2


class ModelFileError(EdgekitError):
    """The model file is missing, is not an SB3 zip, or is damaged."""

    default_hint = "pass the .zip written by SB3's model.save(...)"


class UnsafePickleError(ModelFileError):
    """A pickled field of the model refers to a class edgekit does not load without ``--trust-pickle``."""

    default_hint = ("if you trust where the file comes from, pass --trust-pickle "
                    "(SB3's own loader, which runs code stored in the file)")


class UnsupportedModelError(EdgekitError):
    """A valid SB3 model that edgekit cannot deploy (algorithm, policy or space)."""


class EnvironmentMismatchError(EdgekitError):
    """The Gymnasium environment does not fit the model (id or spaces)."""


class EnvironmentFailedError(EnvironmentMismatchError):
    """The Gymnasium environment raised when made, reset or stepped (its code, or kwargs it rejects)."""


class EnvironmentUnavailableError(EdgekitError):
    """The Gymnasium environment cannot be made here: its code fails with the installed packages."""


class MissingDependencyError(EdgekitError):
    """A package needed for this command is not installed."""


class ConversionError(EdgekitError):
    """A conversion stage (ONNX export, onnx2tf, TFLite) failed or was inaccurate."""


class QuantizationError(ConversionError):
    """The int8 model is not fully int8, or it strays too far from the float policy."""


class CompilerError(EdgekitError):
    """The Edge TPU compiler failed or could not run."""


class BundleError(EdgekitError):
    """A bundle is missing, incomplete, tampered with, or of an unknown format."""

    default_hint = "rebuild the bundle with `edgekit build`"


class BundleExistsError(BundleError):
    """The output directory already exists."""

    default_hint = "choose another --output directory or pass --force to replace it"


class StorageError(EdgekitError):
    """A file could not be written: the disk is full, read-only, or not ours to write."""


_STORAGE_HINTS = {
    errno.ENOSPC: "free space where the output goes (-o) and in {tmp} (TMPDIR: scratch files, see df -h), or write "
                  "elsewhere",
    errno.EDQUOT: "free space within your disk quota (-o, and {tmp}: TMPDIR), or write elsewhere",
    errno.EROFS: "the filesystem is read-only: write the output elsewhere (-o)",
    errno.EACCES: "choose a directory you may write to (-o, TMPDIR), or fix its permissions",
    errno.EPERM: "choose a directory you may write to (-o, TMPDIR), or fix its permissions",
}


def storage_error(exc: BaseException) -> StorageError | None:
    """A full, read-only or forbidden disk met anywhere (often deep inside a library), as the user's
    one-line error; None for any other exception. Follows ``__cause__`` / ``__context__``: libraries
    re-raise it in their own types."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_HINTS:
            where = f" {current.filename}" if current.filename else ""
            return StorageError(f"cannot write{where}: {current.strerror or os.strerror(current.errno)}",
                                hint=_STORAGE_HINTS[current.errno].format(tmp=tempfile.gettempdir()))
        current = current.__cause__ or current.__context__
    return None


class DeviceError(EdgekitError):
    """The requested Edge TPU or interpreter cannot be opened."""


class OutputError(EdgekitError):
    """edgekit cannot write its output (a full disk, a device that refuses writes)."""


class InputError(EdgekitError):
    """An observation given to the runtime has the wrong shape, type or values."""
