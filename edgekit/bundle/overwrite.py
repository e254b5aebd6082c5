"""What an output may replace: ``--force`` replaces edgekit's own output, never the user's files.

A command that writes a directory or file where one already exists replaces it
only with ``--force``, and even then only when it is what edgekit itself wrote
there: a bundle (its manifest says so, and it holds no file the manifest does
not list) or a calibration set. Never the working directory or a directory
holding it, never an input or a directory holding one: those are refused with
a one-line error, however they are named (``.``, ``..``, a symlink). Light:
stdlib and the manifest reader only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekit.bundle.manifest import MANIFEST_NAME, is_bundle, read_document
from edgekit.core.cleanup import held
from edgekit.core.errors import BundleExistsError, UsageError

_NEW_DIRECTORY = "choose a new --output directory (--force replaces only a bundle edgekit wrote)"


def check_replaceable_directory(destination: Path, inputs: Iterable[Path | str | None] = ()) -> None:
    """Raise ``BundleExistsError`` unless ``--force`` may replace the existing ``destination``: an empty
    directory, or an edgekit bundle holding nothing but its own files, that holds neither the working
    directory nor any of ``inputs``."""
    target = Path(destination).resolve()
    _refuse_ancestor_of_cwd(target, BundleExistsError)
    _refuse_ancestor_of_inputs(target, inputs, BundleExistsError)
    if not target.is_dir():
        raise BundleExistsError(f"{target} exists and is not a directory", hint="choose another --output path")
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return
    if not is_bundle(target):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise BundleExistsError(f"refusing to replace {target}: it is not an edgekit bundle (no {MANIFEST_NAME} "
                                f"says so) and it holds {len(entries)} entries ({shown})", hint=_NEW_DIRECTORY)
    foreign = _first_unlisted_file(target)
    if foreign is not None:
        raise BundleExistsError(f"refusing to replace bundle {target}: it holds {foreign}, which is not one of the "
                                "bundle's files", hint=f"move {foreign} out of it, or {_NEW_DIRECTORY}")


def check_replaceable_file(destination: Path, inputs: Iterable[Path | str | None], is_ours: Callable[[Path], bool],
                           what: str) -> None:
    """Raise ``UsageError`` unless ``--force`` may replace the existing file ``destination``: a ``what``
    (``is_ours`` says so) that is none of ``inputs``."""
    target = Path(destination).resolve()
    hint = "choose a new -o file (--force replaces only a file edgekit wrote)"
    if target.is_dir():
        raise UsageError(f"{target} is a directory", hint=hint)
    _refuse_ancestor_of_inputs(target, inputs, UsageError)
    if not is_ours(target):
        raise UsageError(f"refusing to replace {target}: it is not an edgekit {what}", hint=hint)


def _refuse_ancestor_of_cwd(target: Path, error: type[BundleExistsError] | type[UsageError]) -> None:
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working directory was deleted: nothing of it to protect
        return
    if target == cwd or target in cwd.parents:
        what = "the working directory" if target == cwd else f"a directory holding the working directory {cwd}"
        raise error(f"refusing to replace {target}: it is {what}", hint=_NEW_DIRECTORY)


def _refuse_ancestor_of_inputs(target: Path, inputs: Iterable[Path | str | None],
                               error: type[BundleExistsError] | type[UsageError]) -> None:
    for given in inputs:
        if given is None or str(given).startswith("hf://"):
            continue
        source = Path(given).resolve()
        if target == source or target in source.parents:
            what = "the input" if target == source else "a directory holding the input"
            raise error(f"refusing to replace {target}: it is {what} {given}",
                        hint="write the output somewhere else, e.g. -o NAME.bundle")


def _first_unlisted_file(bundle: Path) -> str | None:
    """The first file below ``bundle`` that its manifest does not list (the manifest itself aside)."""
    document = read_document(bundle)
    listed = document.get("files") if isinstance(document.get("files"), dict) else {}
    for path in sorted(bundle.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        name = path.relative_to(bundle).as_posix()
        if name != MANIFEST_NAME and name not in listed:
            return name
    return None


@contextmanager
def staged_file(destination: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``destination`` that replaces it, in one rename, on success;
    on any exception (a stop signal included) it is removed and ``destination`` is left as it was."""
    destination = Path(destination)
    staging = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
        os.replace(staging, destination)
    except BaseException:
        with held():
            staging.unlink(missing_ok=True)
        raise
