"""Bundle files on disk: integrity checks, and atomic writing of a whole bundle.

A bundle is written into a hidden staging directory beside its destination and
renamed into place only when complete, so a failed or interrupted build never
leaves a half-written bundle, and an existing bundle is replaced only with
``force``. Light: the runtime imports the integrity check.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekit.bundle.layout import sha256_file
from edgekit.bundle.manifest import Manifest
from edgekit.core.cleanup import held
from edgekit.core.errors import BundleError, BundleExistsError


def verify_file(bundle_dir: Path, manifest: Manifest, name: str) -> Path:
    """Return the path of ``name`` after checking its sha256 against the manifest."""
    expected = manifest.files.get(name)
    if expected is None:
        raise BundleError(f"{name} is not listed in the bundle's manifest")
    path = Path(bundle_dir) / name
    if not path.is_file():
        raise BundleError(f"bundle file {name} is missing from {bundle_dir}")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(
            f"bundle file {name} does not match its sha256 in the manifest (modified or truncated)",
            hint="copy the bundle again from the build machine, or rebuild it",
        )
    return path


def verify_all(bundle_dir: Path, manifest: Manifest) -> list[str]:
    """Check every file the manifest lists; return their names."""
    for name in manifest.files:
        verify_file(bundle_dir, manifest, name)
    return sorted(manifest.files)


@contextmanager
def staged_directory(destination: Path, force: bool = False,
                     inputs: Iterable[Path | str | None] = ()) -> Iterator[Path]:
    """Yield an empty staging directory that becomes ``destination`` on success.

    On any exception (KeyboardInterrupt included) the staging directory is
    removed and ``destination`` is left as it was. An existing ``destination``
    is replaced only with ``force``, and only when ``edgekit.bundle.overwrite`` says it
    is a bundle that holds neither the working directory nor ``inputs``.
    """
    from edgekit.bundle.overwrite import check_replaceable_directory  # it reads manifests: imported when used

    destination = Path(destination).resolve()
    inputs = tuple(inputs)
    if destination.exists() or destination.is_symlink():
        if not force:
            raise BundleExistsError(f"{destination} already exists")
        check_replaceable_directory(destination, inputs)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = destination.parent / f".{destination.name}.partial-{tag}"
    staging.mkdir()
    try:
        yield staging
        if destination.exists():  # checked again: it may have appeared or changed while the build ran
            if not force:
                raise BundleExistsError(f"{destination} already exists")
            check_replaceable_directory(destination, inputs)
        with held():  # a stop signal waits for the renames
            _swap_into_place(staging, destination, tag)
    except BaseException:
        with held():
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, destination: Path, tag: str) -> None:
    old = destination.parent / f".{destination.name}.old-{tag}"
    if destination.exists():
        os.replace(destination, old)
    try:
        os.replace(staging, destination)
    except BaseException:
        if old.exists():
            os.replace(old, destination)
        raise
    shutil.rmtree(old, ignore_errors=True)
