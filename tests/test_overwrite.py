"""``--force`` replaces edgekit's own output and nothing else (issue 17, item 1).

Each test builds a layout a user really has — a folder of their own files, the
folder that holds the model, the working directory, a symlink to one of them —
points an output at it with ``--force``, and proves that every file is still
there, byte for byte, and that the command said why in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLE_MODEL, assert_one_line_error, run_cli

from edgekit.bundle import staged_directory
from edgekit.bundle.overwrite import check_replaceable_directory, check_replaceable_file
from edgekit.core.errors import BundleExistsError, UsageError


def _fingerprint(root: Path) -> dict[str, str]:
    """Every file and directory below ``root`` (symlinks as their target text)."""
    out = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[name] = "-> " + os.readlink(path)
        elif path.is_file():
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[name] = "dir"
    return out


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "data").mkdir()
    (path / "data" / "runs.csv").write_text("1,2,3\n")
    return path


def _fake_bundle(path: Path, files: dict[str, bytes]) -> Path:
    """A directory whose manifest says it is an edgekit bundle and lists ``files``."""
    path.mkdir(parents=True)
    for name, payload in files.items():
        (path / name).write_bytes(payload)
    listed = {name: hashlib.sha256(payload).hexdigest() for name, payload in files.items()}
    (path / "manifest.json").write_text(json.dumps({"format": "edgekit-bundle", "format_version": 1,
                                                    "files": listed}))
    return path


# --- the rule, on the library function --------------------------------------------------------------


def test_force_replaces_a_bundle_and_an_empty_directory(tmp_path):
    bundle = _fake_bundle(tmp_path / "old.bundle", {"model_int8.tflite": b"old"})
    with staged_directory(bundle, force=True) as stage:
        (stage / "new.bin").write_bytes(b"new")
    assert sorted(p.name for p in bundle.iterdir()) == ["new.bin"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with staged_directory(empty, force=True) as stage:
        (stage / "new.bin").write_bytes(b"new")
    assert (empty / "new.bin").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "old.bundle"]


@pytest.mark.parametrize("layout", ["user folder", "bundle with a user file", "not-a-bundle manifest",
                                    "unreadable manifest", "file", "symlink to user folder"])
def test_force_refuses_what_is_not_a_bundle(tmp_path, layout):
    target = tmp_path / "out"
    if layout == "user folder":
        _user_folder(target)
    elif layout == "bundle with a user file":
        _fake_bundle(target, {"model_int8.tflite": b"m"})
        (target / "notes.txt").write_text("mine")
    elif layout == "not-a-bundle manifest":
        _user_folder(target)
        (target / "manifest.json").write_text(json.dumps({"format": "my-own-format", "files": {}}))
    elif layout == "unreadable manifest":
        _user_folder(target)
        (target / "manifest.json").write_text("{not json")
    elif layout == "file":
        target.write_text("a file")
    else:
        _user_folder(tmp_path / "mine")
        target.symlink_to(tmp_path / "mine", target_is_directory=True)
    before = _fingerprint(tmp_path)
    with pytest.raises(BundleExistsError) as caught, staged_directory(target, force=True) as stage:
        (stage / "new.bin").write_bytes(b"new")
    assert _fingerprint(tmp_path) == before
    assert caught.value.hint


def test_force_refuses_the_working_directory_and_its_ancestors(tmp_path, monkeypatch):
    home = _fake_bundle(tmp_path / "work", {"model_int8.tflite": b"m"})  # even a bundle, when it is the cwd
    (home / "sub").mkdir()
    monkeypatch.chdir(home / "sub")
    (home / "sub" / "x").write_text("x")
    _refresh_listing(home)
    before = _fingerprint(tmp_path)
    for target in (Path("."), Path(".."), home):
        with pytest.raises(BundleExistsError, match="working directory"):
            check_replaceable_directory(target)
    assert _fingerprint(tmp_path) == before


def test_force_refuses_a_directory_holding_an_input(tmp_path):
    bundle = _fake_bundle(tmp_path / "b", {"model.zip": b"zip"})  # a model a user put into an old bundle
    for given in (bundle / "model.zip", bundle):
        with pytest.raises(BundleExistsError, match="input"):
            check_replaceable_directory(bundle, inputs=(given,))
    with pytest.raises(BundleExistsError, match="input"):
        check_replaceable_directory(tmp_path, inputs=(bundle / "model.zip",))


def test_force_refuses_a_directory_that_changed_during_the_build(tmp_path):
    bundle = _fake_bundle(tmp_path / "b", {"model_int8.tflite": b"m"})
    with pytest.raises(BundleExistsError, match="notes.txt"), staged_directory(bundle, force=True) as stage:
        (bundle / "notes.txt").write_text("written while the build ran")
        (stage / "new.bin").write_bytes(b"new")
    assert (bundle / "notes.txt").read_text() == "written while the build ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_file_rule(tmp_path):
    ours = tmp_path / "set.npz"
    ours.write_bytes(b"ours")
    check_replaceable_file(ours, (), lambda p: True, "calibration set")
    with pytest.raises(UsageError, match="not an edgekit calibration set"):
        check_replaceable_file(ours, (), lambda p: False, "calibration set")
    with pytest.raises(UsageError, match="the input"):
        check_replaceable_file(ours, (ours,), lambda p: True, "calibration set")
    with pytest.raises(UsageError, match="is a directory"):
        check_replaceable_file(tmp_path, (), lambda p: True, "calibration set")


def _refresh_listing(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {p.relative_to(bundle).as_posix(): "0" * 64 for p in bundle.rglob("*")
                         if p.is_file() and p.name != "manifest.json"}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


# --- the commands, as a user runs them ----------------------------------------------------------------


@pytest.fixture
def model_folder(tmp_path) -> Path:
    """A folder with the user's model and their other files."""
    folder = _user_folder(tmp_path / "agents")
    shutil.copy(EXAMPLE_MODEL, folder / "model.zip")
    return folder


def test_build_force_never_deletes_the_model_folder(model_folder, tmp_path):
    before = _fingerprint(tmp_path)
    proc = run_cli("build", str(model_folder / "model.zip"), "--env", "Pendulum-v1", "-o", str(model_folder),
                   "--force")
    assert_one_line_error(proc, "refusing to replace", "input")
    assert _fingerprint(tmp_path) == before


def test_build_force_never_deletes_the_working_directory(model_folder, tmp_path):
    before = _fingerprint(tmp_path)
    for output in (".", ".."):
        proc = run_cli("build", "model.zip", "--env", "Pendulum-v1", "-o", output, "--force", cwd=model_folder)
        assert_one_line_error(proc, "refusing to replace")
    assert _fingerprint(tmp_path) == before


def test_build_force_never_deletes_a_users_folder_behind_a_symlink(model_folder, tmp_path):
    other = _user_folder(tmp_path / "photos")
    (tmp_path / "out").symlink_to(other, target_is_directory=True)
    before = _fingerprint(tmp_path)
    proc = run_cli("build", str(model_folder / "model.zip"), "--env", "Pendulum-v1", "-o", str(tmp_path / "out"),
                   "--force")
    assert_one_line_error(proc, "refusing to replace", "not an edgekit bundle")
    assert _fingerprint(tmp_path) == before


def test_calibrate_force_never_replaces_the_model_or_a_users_file(model_folder, tmp_path):
    before = _fingerprint(tmp_path)
    for output, needle in ((model_folder / "model.zip", "the input"),
                           (model_folder / "thesis.tex", "not an edgekit calibration set"),
                           (model_folder / "data", "is a directory")):
        proc = run_cli("calibrate", str(model_folder / "model.zip"), "--env", "Pendulum-v1", "-o", str(output),
                       "--force", "--steps", "50")
        assert_one_line_error(proc, needle)
    assert _fingerprint(tmp_path) == before


def test_report_never_replaces_a_users_report(built_bundle, tmp_path):
    out = _user_folder(tmp_path / "out")
    (out / "report.json").write_text('{"my": "own report"}')
    before = _fingerprint(tmp_path)
    proc = run_cli("report", str(built_bundle("ppo-pendulum").bundle_dir), "--episodes", "0", "-o", str(out))
    assert_one_line_error(proc, "refusing to replace", "report.json", "not an edgekit report")
    assert _fingerprint(tmp_path) == before
