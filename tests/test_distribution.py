"""The distribution's name is our own: PyPI's ``edgekit`` is an unrelated project.

The import package and the ``edgekit`` command keep their name; everything that names the
distribution (extras, install hints, set-up commands, scripts) uses ``edgekit-sb3``.
"""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DISTRIBUTION = "edgekit-sb3"
# "edgekit[...]" naming the distribution, not "edgekit-sb3[...]" nor a path such as "./edgekit[...]".
_BARE_SELF_REFERENCE = re.compile(r"(?<![\w./-])edgekit\[")
_TEXT_SUFFIXES = {".py", ".sh", ".md", ".toml", ".txt", ".cfg", ".service", ".rules", ".json", ""}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_distribution_is_named_edgekit_sb3_and_the_command_stays_edgekit():
    project = _project()
    assert project["name"] == DISTRIBUTION
    assert project["scripts"] == {"edgekit": "edgekit.cli:main"}
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
            assert name != "edgekit", f"extra {extra!r} names PyPI's edgekit: {requirement}"


def _tracked_text_files() -> list:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    paths = [REPO / line for line in listed.splitlines()]
    return [p for p in paths if p.is_file() and p.suffix in _TEXT_SUFFIXES and p.name != "test_distribution.py"]


def test_no_file_names_the_distribution_by_the_bare_name():
    offenders = []
    for path in _tracked_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _BARE_SELF_REFERENCE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_no_script_or_doc_installs_edgekit_by_name_from_an_index():
    """`pip install edgekit...` by name fetches the stranger's project; ours installs from a path.

    (The install hints in error messages name `edgekit-sb3[EXTRA]`: pip resolves that to the
    edgekit-sb3 already installed, the one printing the hint, and adds the extra's packages.)"""
    install_by_name = re.compile(r"pip(3)?\s+install\b[^\n#]*?(?<![\w./-])['\"]?edgekit(-sb3)?(\[|['\"\s]|$)")
    offenders = []
    for path in _tracked_text_files():
        if path.suffix not in (".sh", ".md") and path.name != "run":
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if install_by_name.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
