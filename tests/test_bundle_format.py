"""Manifest parsing (including hostile input) and atomic bundle writing."""

from __future__ import annotations

import copy
import json

import pytest

from edgekit.bundle import Manifest, staged_directory
from edgekit.core.errors import BundleError, BundleExistsError


@pytest.fixture(scope="module")
def manifest_dict(built_bundle):
    return json.loads((built_bundle("ppo-pendulum").bundle_dir / "manifest.json").read_text())


def test_round_trip(manifest_dict):
    parsed = Manifest.from_dict(manifest_dict)
    assert json.loads(parsed.to_json()) == manifest_dict


def _mutate(data, path, value):
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize("path,value,needle", [
    (("format",), "something", "not an edgekit bundle"),
    (("format_version",), "1", "format_version must be an integer"),
    (("format_version",), 2, "format version 2 is not supported"),
    (("models", "cpu", "file"), "../../etc/passwd", "outside the bundle"),
    (("models", "cpu", "file"), "/etc/passwd", "outside the bundle"),
    (("models", "cpu", "input", "scale"), -1.0, "scale"),
    (("models", "cpu", "input", "scale"), 1e308, "scale"),
    (("models", "cpu", "input", "zero_point"), 1000, "zero_point"),
    (("models", "cpu", "input", "dtype"), "float32", "int8"),
    (("models", "cpu", "input", "shape"), [1, -3], "shape"),
    (("observation_space", "shape"), [10**12], "shape"),
    (("observation_space", "low"), ["x", 0, 0], "non-number"),
    (("action_space", "kind"), "tuple", "kind"),
    (("postprocess",), "argmax", "does not fit"),
    (("output",), "probabilities", "output"),
    (("preprocess", "scale"), [1.0, 0.0, 1.0], "positive"),
    (("preprocess", "offset"), [1.0], "finite numbers"),
    (("files",), [], "files"),
    (("files", "model_int8.tflite"), "abc", "sha256"),
    (("env_id",), 5, "env_id"),
])
def test_hostile_or_broken_manifests_are_refused(manifest_dict, path, value, needle):
    with pytest.raises(BundleError, match=needle):
        Manifest.from_dict(_mutate(manifest_dict, path, value))


def test_manifest_file_errors(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "edgekit-bundle", "format_version": NaN}')
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("[" * 100000)
    with pytest.raises(BundleError):
        Manifest.read(tmp_path)


def test_staged_directory_appears_only_on_success(tmp_path):
    dest = tmp_path / "bundle"
    with pytest.raises(RuntimeError), staged_directory(dest) as stage:
        (stage / "half.bin").write_bytes(b"x")
        raise RuntimeError("stage failed")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), staged_directory(dest) as stage:
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with staged_directory(dest) as stage:
        (stage / "ok.bin").write_bytes(b"1")
    assert (dest / "ok.bin").read_bytes() == b"1"


def test_staged_directory_never_clobbers_without_force(tmp_path):
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "old.bin").write_bytes(b"old")
    (dest / "manifest.json").write_text(json.dumps({"format": "edgekit-bundle", "files": {"old.bin": "0" * 64}}))
    with pytest.raises(BundleExistsError), staged_directory(dest):
        pass
    with pytest.raises(ValueError), staged_directory(dest, force=True) as stage:
        (stage / "new.bin").write_bytes(b"new")
        raise ValueError("failed build keeps the old bundle")
    assert (dest / "old.bin").read_bytes() == b"old"
    with staged_directory(dest, force=True) as stage:
        (stage / "new.bin").write_bytes(b"new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
