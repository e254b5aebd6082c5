"""Where a model comes from, and the files trained with it: a zip, an rl-zoo3 run folder, a hub snapshot.

Published agents come in two layouts:

* rl-zoo3 run folder ``ALGO/ENV_ID_1/``: ``ENV_ID.zip`` and ``ENV_ID/`` holding
  ``config.yml``, maybe ``env_kwargs.yml`` and ``vecnormalize.pkl``;
* Hugging Face hub repository (``sb3/ALGO-ENV_ID``): ``ALGO-ENV_ID.zip`` with
  ``config.yml``, ``env_kwargs.yml``, ``args.yml`` and maybe ``vec_normalize.pkl``
  beside it (and other zips, such as ``train_eval_metrics.zip``).

``resolve_source`` finds the model and its companions in either (or beside a
bare zip) and infers the env id the layout names, so ``edgekit build FOLDER``
needs nothing else. Nothing found here is executed: the YAML files are read
with the safe loader of ``zoo_config``, the statistics with the restricted
unpickler of ``vecnormalize``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from edgekit.core.errors import ModelFileError, UsageError
from edgekit.host.loading.vecnormalize import FILE_NAMES as VECNORMALIZE_NAMES

HUB_PREFIX = "hf://"
CONFIG = "config.yml"
ENV_KWARGS = "env_kwargs.yml"
ARGS = "args.yml"


@dataclass(frozen=True)
class ModelSource:
    """The model zip and the files of its layout that edgekit reads (None: absent)."""

    model: Path
    layout: str  # "zip" | "rl-zoo3 run folder" | "hub snapshot"
    config: Path | None = None
    env_kwargs: Path | None = None
    vecnormalize: Path | None = None
    env_id: str | None = None  # the id the layout names (folder or file name, args.yml)
    origin: str = ""  # what the user passed (a path or hf://ORG/REPO)

    def describe(self) -> str:
        found = [p.name for p in (self.config, self.env_kwargs, self.vecnormalize) if p is not None]
        return f"{self.layout}" + (f" with {', '.join(found)}" if found else "")


def resolve_source(given: str | Path) -> ModelSource:
    """A path to a zip or a folder, or ``hf://ORG/REPO[@REVISION]`` (downloaded; needs huggingface_hub)."""
    text = str(given)
    if text.startswith(HUB_PREFIX):
        from edgekit.host.loading.hub import download_snapshot

        folder = download_snapshot(text[len(HUB_PREFIX):])
        return _with_origin(_in_folder(folder, hub=True), text)
    path = Path(given)
    if not path.exists():
        raise ModelFileError(f"{path} does not exist")
    if path.is_dir():
        return _with_origin(_in_folder(path, hub=False), text)
    return _with_origin(_beside(path), text)


def _in_folder(folder: Path, hub: bool) -> ModelSource:
    """The one SB3 model zip in ``folder`` (other zips, e.g. train_eval_metrics.zip, are not models)."""
    zips = sorted(folder.glob("*.zip"))
    models = [z for z in zips if _is_sb3_zip(z)]
    if len(models) != 1:
        what = f"{len(models)} SB3 model zips" if zips else "no .zip file"
        raise UsageError(f"{folder} is a folder with {what}; expected one model",
                         hint="pass the model .zip itself")
    source = _beside(models[0])
    if hub and source.layout == "zip":
        return replace(source, layout="hub snapshot")
    return source


def _beside(model: Path) -> ModelSource:
    """Companion files of a zip: in ``STEM/`` (rl-zoo3 run folder) or next to it (hub snapshot)."""
    run_folder = model.parent / model.stem
    if run_folder.is_dir() and any((run_folder / name).is_file() for name in (CONFIG, ENV_KWARGS, *VECNORMALIZE_NAMES)):
        return ModelSource(
            model=model, layout="rl-zoo3 run folder", config=_file(run_folder / CONFIG),
            env_kwargs=_file(run_folder / ENV_KWARGS), vecnormalize=_first(run_folder, VECNORMALIZE_NAMES),
            env_id=model.stem,
        )
    folder = model.parent
    config = _file(folder / CONFIG)
    return ModelSource(
        model=model, layout="hub snapshot" if config is not None else "zip", config=config,
        env_kwargs=_file(folder / ENV_KWARGS) if config is not None else None,
        vecnormalize=_first(folder, VECNORMALIZE_NAMES),
        env_id=_hub_env_id(model, folder) if config is not None else None,
    )


def _hub_env_id(model: Path, folder: Path) -> str | None:
    """``args.yml``'s env, else the ``ALGO-ENV_ID`` file name the hub uses."""
    args = _file(folder / ARGS)
    if args is not None:
        from edgekit.host.loading.zoo_config import read_zoo_config

        env = read_zoo_config(args).get("env")
        if isinstance(env, str) and env:
            return env
    stem = model.stem
    return stem.split("-", 1)[1] if "-" in stem else None


def _is_sb3_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return {"data", "policy.pth"} <= names


def _file(path: Path) -> Path | None:
    return path if path.is_file() else None


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _with_origin(source: ModelSource, origin: str) -> ModelSource:
    return replace(source, origin=origin)
