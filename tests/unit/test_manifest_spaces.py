"""The manifest as the device reads it: the committed bundles parse, round-trip, and every field the runtime
relies on is checked; spaces and the observation encoding on their own."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from edgekit.bundle import Manifest, verify_all
from edgekit.core.errors import BundleError, InputError
from edgekit.core.observations import ObservationEncoder
from edgekit.core.spaces import SpaceSpec


@pytest.fixture(scope="module")
def document(bundle_dir):
    return json.loads((bundle_dir("ppo-pendulum") / "manifest.json").read_text())


@pytest.mark.parametrize("name", ["ppo-pendulum", "ppo-cartpole"])
def test_committed_bundles_parse_verify_and_round_trip(bundle_dir, name):
    bundle = bundle_dir(name)
    manifest = Manifest.read(bundle)
    assert sorted(verify_all(bundle, manifest)) == ["calibration.npz", "model_int8.tflite", "policy.onnx",
                                                    "report.html", "report.json", "verify.npz"]
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest
    assert manifest.algorithm == "PPO" and manifest.env_id == manifest.environment.id


def _edited(document, path, value):
    data = copy.deepcopy(document)
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(("path", "value", "needle"), [
    (("format",), "something-else", "not an edgekit bundle"),
    (("format_version",), True, "must be an integer"),
    (("format_version",), 2, "not supported"),
    (("observation_space", "kind"), "tuple", "kind in"),
    (("observation_space", "shape"), [0], "positive integers"),
    (("action_space", "low"), ["nan"], "low"),
    (("action_space",), {"kind": "dict", "spaces": []}, "dict"),
    (("output",), "probabilities", "output must be one of"),
    (("postprocess",), "argmax", "does not fit"),
    (("models",), {}, "at least the cpu model"),
    (("models", "cpu", "input", "scale"), 0.0, "scale"),
    (("models", "cpu", "output", "zero_point"), 300, "zero_point"),
    (("models", "cpu", "output", "shape"), [1, 2], "does not fit"),
    (("models", "cpu", "file"), "../../etc/passwd", "outside the bundle"),
    (("files", "model_int8.tflite"), "abc", "hex sha256"),
    (("files",), {"/etc/passwd": "0" * 64}, "outside the bundle"),
    (("preprocess", "scale"), [1.0, 0.0, 1.0], "positive"),
    (("preprocess", "offset"), [0.0, 0.0], "finite numbers"),
    (("env_id",), "", "env_id"),
    (("env_id",), KeyError, "env_id"),
])
def test_hostile_or_broken_manifests_are_refused(document, path, value, needle):
    data = _edited(document, path, value)
    with pytest.raises(BundleError, match=needle):
        Manifest.from_dict(json.loads(json.dumps(data)))


def test_a_manifest_with_nan_or_deep_nesting_is_not_json_to_us(bundle_copy):
    bundle = bundle_copy("ppo-pendulum")
    path = bundle / "manifest.json"
    path.write_text(path.read_text().replace('"split": 0', '"split": NaN'))
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.read(bundle)
    path.write_text("[" * 100_000)
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.read(bundle)


@pytest.mark.parametrize("space", [
    SpaceSpec("box", (2, 3), "float32", low=(-1.0,) * 6, high=(1.0,) * 6),
    SpaceSpec("box", (1,), "float64", low=(-np.inf,), high=(np.inf,)),
    SpaceSpec("discrete", (), "int64", n=5, start=2),
    SpaceSpec("multi_discrete", (2,), "int64", nvec=(3, 2)),
    SpaceSpec("multi_binary", (4,), "int8"),
    SpaceSpec("dict", (), "", spaces=(("pos", SpaceSpec("box", (2,), "float32", low=(0.0, 0.0), high=(1.0, 1.0))),
                                      ("mode", SpaceSpec("discrete", (), "int64", n=3)))),
])
def test_spaces_round_trip_through_json(space):
    assert SpaceSpec.from_dict(json.loads(json.dumps(space.to_dict()))) == space


def test_the_encoder_is_sb3s_preprocessing_and_decodes_back():
    space = SpaceSpec("dict", (), "", spaces=(
        ("cell", SpaceSpec("discrete", (), "int64", n=3)),
        ("bins", SpaceSpec("multi_discrete", (2,), "int64", nvec=(2, 3))),
        ("bits", SpaceSpec("multi_binary", (2,), "int8")),
        ("pos", SpaceSpec("box", (2,), "float32", low=(-1.0, -1.0), high=(1.0, 1.0)))))
    encoder = ObservationEncoder(space)
    obs = {"cell": 2, "bins": [1, 0], "bits": [1, 0], "pos": [0.25, -0.5]}
    features, single = encoder.encode(obs)
    assert single and features.dtype == np.float32
    # one-hot of the cell, one-hot per branch, the bits as they are, the Box flattened: in the Dict's order
    np.testing.assert_array_equal(features[0], [0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0.25, -0.5])
    decoded = encoder.decode(features)
    assert {k: np.asarray(v)[0].tolist() for k, v in decoded.items()} == obs
    with pytest.raises(InputError, match="lacks"):
        encoder.encode({"cell": 2})
    with pytest.raises(InputError):
        encoder.encode({**obs, "cell": 3})  # outside Discrete(3)
    with pytest.raises(BundleError, match="non-zero start"):  # SB3's one-hot ignores start: refused
        ObservationEncoder(SpaceSpec("discrete", (), "int64", n=3, start=1))
