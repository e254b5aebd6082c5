"""``hf://ORG/REPO``: fetch a Hugging Face hub repository snapshot, to be read as a zoo folder.

Only the files edgekit reads are fetched (model zips, the zoo's YAML files,
VecNormalize statistics), never code; they are then read like any local
folder (restricted unpickler, safe YAML). Needs ``huggingface_hub``
(``pip install 'edgekit-sb3[hub]'``); ``HF_HUB_OFFLINE=1`` uses the local cache only.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekit.core.errors import MissingDependencyError, ModelFileError, UsageError

ALLOW_PATTERNS = ("*.zip", "*.yml", "*.yaml", "*.pkl", "*.json", "README.md")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def parse_repo(text: str) -> tuple[str, str | None]:
    """``ORG/REPO`` or ``ORG/REPO@REVISION`` -> (repo id, revision)."""
    repo, _, revision = text.partition("@")
    if not _REPO.match(repo) or ".." in repo:
        raise UsageError(f"hf://{text} is not a hub repository id", hint="e.g. hf://sb3/ppo-CartPole-v1")
    return repo, revision or None


def download_snapshot(text: str) -> Path:
    """The local folder holding the repository's files (from the cache when already there)."""
    repo, revision = parse_repo(text)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        raise MissingDependencyError("hf:// models need huggingface_hub",
                                     hint="pip install 'edgekit-sb3[hub]'") from None
    try:
        return Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=list(ALLOW_PATTERNS)))
    except RepositoryNotFoundError:
        raise ModelFileError(f"hub repository {repo} does not exist (or is private)",
                             hint="check the name on huggingface.co, e.g. sb3/ppo-CartPole-v1") from None
    except LocalEntryNotFoundError:
        raise ModelFileError(f"hub repository {repo} is not in the local cache and the hub cannot be reached",
                             hint="connect to the network (or unset HF_HUB_OFFLINE), or download the folder "
                             "and pass its path") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelFileError(f"could not download {repo} from the hub ({type(exc).__name__}: {exc})",
                             hint="retry, or download the folder and pass its path") from None
