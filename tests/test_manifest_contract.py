"""The manifest as a contract (issue 17, item 3): what post-processing needs is checked when a bundle is
read, and the build refuses to write a bundle the reader would refuse, saying why."""

from __future__ import annotations

import base64
import copy
import json
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli_batch
from gymnasium import spaces

from edgekit.bundle import Manifest
from edgekit.core.errors import BundleError, EdgekitError
from edgekit.core.postprocess import PostProcessor

INF, NEG_INF = "inf", "-inf"  # how the manifest writes infinite bounds


@pytest.fixture(scope="module")
def squashed_manifest(built_bundle) -> dict:
    """SAC: its actions are unscaled from [-1, 1] onto the Box."""
    return json.loads((built_bundle("sac-pendulum").bundle_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def clipped_manifest(built_bundle) -> dict:
    """PPO: its actions are clipped into the Box (as with --no-output-range; by default the build folds
    the clip into the graph and unscales)."""
    document = json.loads((built_bundle("ppo-pendulum").bundle_dir / "manifest.json").read_text())
    return _with(document, output="actions", postprocess="clip")


def _with(document: dict, **changes) -> dict:
    out = copy.deepcopy(document)
    for dotted, value in changes.items():
        node = out
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return out


@pytest.mark.parametrize("version", [True, 1.0, "1", [1], None, 2])
def test_format_version_must_be_the_integer(squashed_manifest, version):
    with pytest.raises(BundleError, match="format_version must be an integer|format version"):
        Manifest.from_dict(_with(squashed_manifest, format_version=version))


@pytest.mark.parametrize("low,high", [([NEG_INF], [INF]), ([-2.0], [INF]), ([-3.4e38], [3.4e38]), ([-1e39], [1.0]),
                                      ([NEG_INF], [2.0])])
def test_unscaled_actions_need_finite_bounds(squashed_manifest, low, high):
    with pytest.raises(BundleError, match="infinite bounds or a range beyond float32|outside the range"):
        Manifest.from_dict(_with(squashed_manifest, action_space__low=low, action_space__high=high))


def test_clipped_actions_may_be_unbounded(clipped_manifest):
    manifest = Manifest.from_dict(_with(clipped_manifest, action_space__low=[NEG_INF], action_space__high=[INF]))
    actions = PostProcessor(manifest.postprocess, manifest.action_space)(np.array([[-5.0], [0.5], [1e30]]))
    assert np.isfinite(actions).all()


@pytest.mark.parametrize("value", [10**400, "nan", True, None, [1.0]])
def test_bounds_that_are_no_numbers(clipped_manifest, value):
    with pytest.raises(BundleError, match="non-number"):
        Manifest.from_dict(_with(clipped_manifest, action_space__low=[value]))


def test_an_integer_bound_beyond_int64_is_a_number(clipped_manifest):
    """It made numpy's isfinite raise TypeError (found by the bound-values fuzz)."""
    manifest = Manifest.from_dict(_with(clipped_manifest, action_space__low=[-(2**63) - 1]))
    assert manifest.action_space.low == (-(2.0**63),)


@pytest.mark.parametrize("where", ["action_space", "observation_space"])
def test_box_low_above_high_is_refused(squashed_manifest, where):
    space = squashed_manifest[where]
    low, high = list(space["low"]), list(space["high"])
    low[0], high[0] = 3.0, -3.0
    with pytest.raises(BundleError, match=r"low > high at index 0 \(3 > -3\)"):
        Manifest.from_dict(_with(squashed_manifest, **{f"{where}__low": low, f"{where}__high": high}))
    with pytest.raises(BundleError, match=r"low bound of \+inf"):
        Manifest.from_dict(_with(squashed_manifest, **{f"{where}__low": [INF] * len(low), f"{where}__high":
                                                       [INF] * len(low)}))


@pytest.mark.parametrize("dotted,value,needle", [
    ("models__cpu__input__scale", 1e-39, "normal float32"),
    ("models__cpu__output__scale", 0.0, "scale"),
    ("preprocess__scale", [1e-31, 1.0, 1.0], "at least 1e-30"),
    ("preprocess__offset", [1e31, 0.0, 0.0], "finite numbers"),
    ("preprocess__split", True, "split"),
    ("models__cpu__input__zero_point", 1.0, "zero_point"),
    ("models__cpu__input__zero_point", False, "zero_point"),
])
def test_scales_and_zero_points_are_typed_and_in_range(squashed_manifest, dotted, value, needle):
    with pytest.raises(BundleError, match=needle):
        Manifest.from_dict(_with(squashed_manifest, **{dotted: value}))


def test_normalization_std_must_be_positive(clipped_manifest):
    size = len(clipped_manifest["preprocess"]["offset"])
    normalize = {"mean": [0.0] * size, "std": [1e-40] * size, "clip": 10.0}
    with pytest.raises(BundleError, match="std must be positive"):
        Manifest.from_dict(_with(clipped_manifest, preprocess__normalize=normalize))
    with pytest.raises(BundleError, match="clip"):
        Manifest.from_dict(_with(clipped_manifest, preprocess__normalize={**normalize, "std": [1.0] * size,
                                                                          "clip": True}))


# --- the build refuses to write what the reader refuses ---------------------------------------------------


def _td3_zip(tmp_path: Path, action_space: spaces.Box) -> Path:
    """An untrained TD3 (squashed actions) whose saved action space is ``action_space``: a file a
    user could not make through gymnasium's checks, but anyone can write."""
    from stable_baselines3 import TD3

    path = tmp_path / "td3.zip"
    TD3("MlpPolicy", "Pendulum-v1", learning_starts=0, buffer_size=10, device="cpu",
        policy_kwargs={"net_arch": [8]}).save(path)
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "data":
                data = json.loads(payload)
                data["action_space"][":serialized:"] = base64.b64encode(cloudpickle.dumps(action_space)).decode()
                payload = json.dumps(data).encode()
            dst.writestr(item, payload)
    return edited


def _box(low: float, high: float) -> spaces.Box:
    box = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    box.low, box.high = np.array([low], np.float32), np.array([high], np.float32)  # past gymnasium's checks
    return box


REFUSED_BOUNDS = [(-np.inf, np.inf, "infinite bounds"), (-3.4e38, 3.4e38, "range beyond float32"),
                  (2.0, -2.0, "low > high")]


@pytest.fixture(scope="module")
def refused_builds(tmp_path_factory):
    """needle -> (`edgekit build` of a TD3 zip with those action bounds, its output path); one interpreter."""
    folders = [tmp_path_factory.mktemp(f"bounds-{i}") for i in range(len(REFUSED_BOUNDS))]
    models = [_td3_zip(folder, _box(low, high)) for folder, (low, high, _n) in zip(folders, REFUSED_BOUNDS)]
    procs = run_cli_batch([("build", str(model), "--env", "Pendulum-v1", "-o", str(folder / "b"),
                            "--report-episodes", "0") for model, folder in zip(models, folders)])
    return {needle: (proc, folder / "b") for (_l, _h, needle), proc, folder in zip(REFUSED_BOUNDS, procs, folders)}


@pytest.mark.parametrize("low,high,needle", REFUSED_BOUNDS)
def test_build_refuses_a_model_whose_bundle_would_be_refused(refused_builds, low, high, needle):
    proc, output = refused_builds[needle]
    assert_one_line_error(proc, needle)
    assert not output.exists()


def test_library_refuses_it_before_any_stage_runs(tmp_path):
    from edgekit.host.loading import load_agent
    from edgekit.stages.extract import extract_policy

    agent = load_agent(_td3_zip(tmp_path, _box(-np.inf, np.inf)))
    with pytest.raises(EdgekitError, match="infinite bounds"):
        extract_policy(agent, None, None)
