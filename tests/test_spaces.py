"""Observation and action spaces beyond float Box / Discrete, checked against SB3's own code.

The encoder (observations -> flat features) against SB3's ``preprocess_obs`` and
extractors, the post-processing against SB3's distributions' ``mode()``, the
manifest's new space descriptions (including hostile ones), and the loader's
refusals with their reasons.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import numpy as np
import pytest
from gymnasium import spaces

from edgekit.bundle import Manifest
from edgekit.core.errors import BundleError, InputError, UnsafePickleError, UnsupportedModelError
from edgekit.core.observations import ObservationEncoder
from edgekit.core.postprocess import MULTI_ARGMAX, THRESHOLD, PostProcessor
from edgekit.core.spaces import SpaceSpec, observation_kind
from edgekit.host.gym_envs import space_spec

OBSERVATION_SPACES = {
    "discrete": spaces.Discrete(5),
    "multi_discrete": spaces.MultiDiscrete([3, 1, 4]),
    "multi_binary": spaces.MultiBinary(4),
    "multi_binary_2d": spaces.MultiBinary([2, 3]),
    "int_box": spaces.Box(0, 9, (2, 2), np.int64),
    "dict": spaces.Dict({"pos": spaces.Box(-1.0, 1.0, (2,), np.float32), "cell": spaces.Discrete(3),
                         "bins": spaces.MultiDiscrete([2, 3]), "signs": spaces.MultiBinary(2)}),
}


def _sb3_features(space, batch):
    """What SB3 feeds the MLP: preprocess_obs, then FlattenExtractor or CombinedExtractor."""
    import torch
    from stable_baselines3.common.preprocessing import preprocess_obs
    from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor

    if isinstance(space, spaces.Dict):
        tensors = {k: torch.as_tensor(np.asarray(v)) for k, v in batch.items()}
        extractor = CombinedExtractor(space)
    else:
        tensors = torch.as_tensor(np.asarray(batch))
        extractor = FlattenExtractor(space)
    with torch.no_grad():
        return extractor(preprocess_obs(tensors, space)).numpy()


@pytest.mark.parametrize("name", sorted(OBSERVATION_SPACES))
def test_encoder_equals_sb3_preprocessing_and_decodes_back(name):
    space = OBSERVATION_SPACES[name]
    space.seed(0)
    samples = [space.sample() for _ in range(64)]
    batch = {k: np.stack([s[k] for s in samples]) for k in space.spaces} if isinstance(space, spaces.Dict) \
        else np.stack(samples)
    encoder = ObservationEncoder(space_spec(space, "observation"))
    features, single = encoder.encode(batch)
    assert not single and features.dtype == np.float32
    expected = _sb3_features(space, batch)
    assert features.shape == expected.shape == (64, encoder.features)
    np.testing.assert_array_equal(features, expected)
    decoded = encoder.decode(features)
    for got, want in ([(decoded[k], batch[k]) for k in batch] if isinstance(batch, dict) else [(decoded, batch)]):
        np.testing.assert_array_equal(got, want)
    one, single = encoder.encode(samples[3])
    assert single and np.array_equal(one[0], features[3])
    assert np.array_equal(encoder.binary, np.isin(features, (0, 1)).all(axis=0) & encoder.binary)
    assert len(encoder.feature_names()) == encoder.features


def test_encoder_takes_what_envs_and_json_give():
    discrete = ObservationEncoder(space_spec(spaces.Discrete(4), "observation"))
    for value in (2, np.int64(2), np.array(2), 2.0, [2][0]):
        features, single = discrete.encode(value)
        assert single and features.tolist() == [[0, 0, 1, 0]]
    assert discrete.encode([0, 3])[0].tolist() == [[1, 0, 0, 0], [0, 0, 0, 1]]
    multi = ObservationEncoder(space_spec(spaces.MultiDiscrete([2, 3]), "observation"))
    assert multi.encode([1, 2])[0].tolist() == [[0, 1, 0, 0, 1]]
    binary = ObservationEncoder(space_spec(spaces.MultiBinary(3), "observation"))
    assert binary.encode([True, False, True])[0].tolist() == [[1, 0, 1]]


@pytest.mark.parametrize("space,value,needle", [
    (spaces.Discrete(4), 4, "outside Discrete"),
    (spaces.Discrete(4), -1, "outside Discrete"),
    (spaces.Discrete(4), 1.5, "integers"),
    (spaces.Discrete(4), float("nan"), "NaN"),
    (spaces.Discrete(4), [[1]], "shape"),
    (spaces.Discrete(4), "2", "not numeric"),
    (spaces.Discrete(4), 10**30, "not numeric"),
    (spaces.MultiDiscrete([2, 3]), [1, 3], "outside MultiDiscrete"),
    (spaces.MultiDiscrete([2, 3]), [1], "shape"),
    (spaces.MultiBinary(2), [0, 2], "only 0 and 1"),
    (spaces.MultiBinary(2), [0.5, 1], "only 0 and 1"),
    (OBSERVATION_SPACES["dict"], [1, 2], "must be a dict"),
    (OBSERVATION_SPACES["dict"], {"pos": [0, 0], "cell": 1, "bins": [0, 0]}, "lacks \\['signs'\\]"),
    (OBSERVATION_SPACES["dict"], {"pos": [0, 0], "cell": 1, "bins": [0, 0], "signs": [0, 1], "x": 1}, "unknown keys"),
    (OBSERVATION_SPACES["dict"], {"pos": [[0, 0]], "cell": 1, "bins": [0, 0], "signs": [0, 1]}, "mix single"),
    (OBSERVATION_SPACES["dict"], {"pos": [0, 0], "cell": 3, "bins": [0, 0], "signs": [0, 1]}, "\\['cell'\\]"),
])
def test_bad_observations_are_input_errors(space, value, needle):
    with pytest.raises(InputError, match=needle):
        ObservationEncoder(space_spec(space, "observation")).encode(value)


def _random_logits(rng, rows, width):
    logits = rng.normal(size=(rows, width)).astype(np.float32)
    logits[: rows // 4] = np.round(logits[: rows // 4])  # ties, and exact zeros
    logits[rows // 4: rows // 2] = 0.0
    return logits


def test_multi_argmax_is_sb3_multicategorical_mode():
    import torch
    from stable_baselines3.common.distributions import MultiCategoricalDistribution

    nvec = [3, 1, 4, 2]
    logits = _random_logits(np.random.default_rng(0), 400, sum(nvec))
    sb3 = MultiCategoricalDistribution(nvec).proba_distribution(torch.as_tensor(logits)).mode().numpy()
    space = space_spec(spaces.MultiDiscrete(nvec), "action")
    ours = PostProcessor(MULTI_ARGMAX, space)(logits)
    assert ours.dtype == sb3.dtype == np.int64
    np.testing.assert_array_equal(ours, sb3)


def test_threshold_is_sb3_bernoulli_mode():
    import torch
    from stable_baselines3.common.distributions import BernoulliDistribution

    logits = _random_logits(np.random.default_rng(1), 400, 5)
    logits[0] = [0.0, -0.0, 1e-3, -1e-3, 1e-6]  # the tie logit == 0 (probability 0.5) goes to 0
    sb3 = BernoulliDistribution(5).proba_distribution(torch.as_tensor(logits)).mode().numpy()
    ours = PostProcessor(THRESHOLD, space_spec(spaces.MultiBinary(5), "action"))(logits)
    assert ours.dtype == sb3.dtype == np.float32
    np.testing.assert_array_equal(ours, sb3)
    assert ours[0].tolist() == [0, 0, 1, 0, 1]


def test_runtime_lookup_and_branch_picker_equal_the_postprocessor():
    """The device's int8 fast paths (a lookup table, the per-branch picker) give the batch path's actions."""
    from edgekit.runtime.step import branch_picker, lookup_table

    rng = np.random.default_rng(2)
    levels = rng.integers(-128, 128, size=(300, 9)).astype(np.int8)
    levels[:50, :3] = levels[:50, :1]  # ties inside a branch

    def dequantize(q):
        return (q.astype(np.float32) + 7.0) * np.float32(0.02)

    multi = PostProcessor(MULTI_ARGMAX, space_spec(spaces.MultiDiscrete([3, 4, 2]), "action"))
    view = np.zeros(9, dtype=np.int8)
    pick = branch_picker(view, multi.branches)
    for row in levels:
        view[:] = row
        np.testing.assert_array_equal(pick(), multi(dequantize(row[None]))[0])
    bits = PostProcessor(THRESHOLD, space_spec(spaces.MultiBinary(9), "action"))
    table = lookup_table(bits, dequantize, 9)
    np.testing.assert_array_equal(table[np.arange(9)[None, :], levels], bits(dequantize(levels)))


# --- manifest -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", [*OBSERVATION_SPACES.values(), spaces.MultiDiscrete([4, 2]),
                                   spaces.MultiBinary(3)])
def test_space_specs_round_trip_through_json(space):
    spec = space_spec(space, "observation")
    assert SpaceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("raw,needle", [
    ({"kind": "dict", "spaces": []}, "1 to 64 sub-spaces"),
    ({"kind": "dict", "spaces": [{"key": "a", "space": {"kind": "dict", "spaces": []}}]}, "another dict"),
    ({"kind": "dict", "spaces": [{"key": "a", "space": {"kind": "discrete", "shape": [], "dtype": "int64", "n": 2}},
                                 {"key": "a", "space": {"kind": "discrete", "shape": [], "dtype": "int64", "n": 2}}]},
     "twice"),
    ({"kind": "dict", "spaces": [{"key": "", "space": {}}]}, "keys"),
    ({"kind": "dict", "spaces": [{"key": 5, "space": {}}]}, "keys"),
    ({"kind": "dict", "spaces": "ab"}, "sub-spaces"),
    ({"kind": "multi_discrete", "shape": [2], "dtype": "int64", "nvec": [3]}, "nvec"),
    ({"kind": "multi_discrete", "shape": [2], "dtype": "int64", "nvec": [3, 0]}, "nvec"),
    ({"kind": "multi_discrete", "shape": [2, 1], "dtype": "int64", "nvec": [3, 2]}, "nvec"),
    ({"kind": "multi_discrete", "shape": [2], "dtype": "int64", "nvec": [2**20, 2**20]}, "nvec"),
    ({"kind": "multi_binary", "shape": [2**11, 2**11], "dtype": "int8"}, "larger"),
    ({"kind": "multi_binary", "shape": [3], "dtype": "object"}, "dtype"),
])
def test_hostile_space_descriptions_are_refused(raw, needle):
    with pytest.raises(BundleError, match=needle):
        SpaceSpec.from_dict(raw)


@pytest.fixture(scope="module")
def dict_manifest(built_bundle):
    return json.loads((built_bundle("ppo-dict-multidiscrete").bundle_dir / "manifest.json").read_text())


def test_manifest_describes_the_encoding(dict_manifest):
    manifest = Manifest.from_dict(dict_manifest)
    assert json.loads(manifest.to_json()) == dict_manifest
    encoding = dict_manifest["preprocess"]["encoding"]
    assert [p["key"] for p in encoding] == ["bins", "cell", "pos", "signs"]  # gymnasium's sorted key order
    assert [p["kind"] for p in encoding] == ["one_hot", "one_hot", "float", "binary"]
    assert sum(p["features"] for p in encoding) == manifest.observation_space.features == 12
    assert dict_manifest["postprocess"] == "multi_argmax" and dict_manifest["output"] == "multi_logits"


def _mutated(document, path, value):
    document = copy.deepcopy(document)
    node = document
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return document


@pytest.mark.parametrize("path,value,needle", [
    (("preprocess", "encoding"), KeyError, "encoding is missing"),
    (("preprocess", "encoding", 0, "kind"), "float", "does not match"),
    (("preprocess", "encoding", 1, "classes"), [4], "does not match"),
    (("preprocess", "encoding"), [], "does not match"),
    (("observation_space", "spaces", 1, "space", "start"), 1, "non-zero start"),
    (("observation_space", "spaces", 0, "space", "nvec"), [2, 30], "does not match"),
    (("action_space",), {"kind": "dict", "spaces": [{"key": "a", "space": {"kind": "multi_binary", "shape": [2],
                                                                          "dtype": "int8"}}]}, "cannot be a dict"),
    (("action_space", "nvec"), [3, 3], "output \\[1, 5\\] does not fit MultiDiscrete"),
    (("postprocess",), "threshold", "does not fit"),
    (("output",), "categorical", "output"),
])
def test_hostile_manifests_with_new_spaces_are_refused(dict_manifest, path, value, needle):
    with pytest.raises(BundleError, match=needle):
        Manifest.from_dict(_mutated(dict_manifest, path, value))


def test_bundles_without_an_encoding_still_read(built_bundle):
    """Bundles written before the encoding existed (Box observations only) read as before."""
    document = json.loads((built_bundle("ppo-pendulum").bundle_dir / "manifest.json").read_text())
    old = _mutated(document, ("preprocess", "encoding"), KeyError)
    assert Manifest.from_dict(old).preprocess == Manifest.from_dict(document).preprocess


# --- loading and support ------------------------------------------------------------------------------


def test_combined_extractor_may_be_named_not_called():
    from stable_baselines3.common.torch_layers import CombinedExtractor

    from edgekit.host.loading.restricted_unpickle import restricted_loads

    kwargs = {"features_extractor_class": CombinedExtractor, "net_arch": [8]}
    assert restricted_loads(pickle.dumps(kwargs), "policy_kwargs") == kwargs

    class _Calls:
        def __reduce__(self):
            return (CombinedExtractor, (spaces.Dict({"a": spaces.Discrete(2)}),))

    with pytest.raises(UnsafePickleError, match="name but not call"):
        restricted_loads(pickle.dumps(_Calls()), "policy_kwargs")


def test_a_model_naming_combined_extractor_loads_without_trusting_pickles(trained_model):
    import base64
    import zipfile

    from edgekit.host.loading import load_agent

    path = trained_model("sac-dict-box")
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    assert b"CombinedExtractor" in base64.b64decode(data["policy_kwargs"][":serialized:"])
    agent = load_agent(path)  # the restricted unpickler: a class reference, never called
    assert agent.policy == "MultiInputPolicy" and agent.observation_space.kind == "dict"


@pytest.mark.parametrize("space,needle", [
    (spaces.Dict({"outer": spaces.Dict({"inner": spaces.Discrete(2)})}), "nested Dict"),
    (spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))), "Tuple is not supported \\(nor by SB3\\)"),
    (spaces.MultiDiscrete([[2, 3], [4, 5]]), "2-D nvec"),
    (spaces.MultiDiscrete([2, 3], start=[1, 0]), "non-zero start"),
])
def test_spaces_sb3_cannot_take_are_refused_with_the_reason(space, needle):
    with pytest.raises(UnsupportedModelError, match=needle):
        space_spec(space, "observation")


def test_observation_kinds_and_refusals():
    from edgekit.host.loading.sb3_zip import _check_supported
    from edgekit.host.support_matrix import Combination, check_supported

    image = spaces.Box(0, 255, (3, 16, 16), np.uint8)
    assert observation_kind(space_spec(spaces.Box(0, 255, (16,), np.uint8), "observation")) == "box"
    assert observation_kind(space_spec(image, "observation")) == "image"  # CnnPolicy's; MlpPolicy refuses it
    with pytest.raises(UnsupportedModelError, match="deployed with CnnPolicy"):
        check_supported(Combination("PPO", "MlpPolicy", "image", "box"))
    with_image = space_spec(spaces.Dict({"cam": image, "pos": spaces.Box(-1, 1, (2,))}), "observation")
    with pytest.raises(UnsupportedModelError, match="image keys"):
        check_supported(Combination("PPO", "MultiInputPolicy", observation_kind(with_image), "box"))
    with pytest.raises(UnsupportedModelError, match="SAC.*multi_binary actions"):
        check_supported(Combination("SAC", "MlpPolicy", "discrete", "multi_binary"))

    class _Info:
        from edgekit.host.algorithms import ALGORITHMS
        algorithm = ALGORITHMS["PPO"]

    shifted = space_spec(spaces.Discrete(3, start=1), "observation")
    with pytest.raises(UnsupportedModelError, match="non-zero start"):
        _check_supported(_Info(), shifted, space_spec(spaces.Discrete(2), "action"))


# --- conditioning -------------------------------------------------------------------------------------


def _graph(postprocess, output, width, branches=()):
    import torch
    from torch import nn

    from edgekit.host.actor import DeterministicActor
    from edgekit.stages.artifacts import PolicyGraph

    torch.manual_seed(0)
    actor = DeterministicActor(nn.Flatten(), nn.Sequential(nn.Linear(7, 16), nn.Tanh()), nn.Linear(16, width),
                               squash=False)
    with torch.no_grad():
        actor.head.bias.add_(3.0)  # a large common offset, as trained logits often have
    return PolicyGraph(module=actor.eval(), input_size=7, output_size=width, output=output, postprocess=postprocess,
                       binary_inputs=(0, 1, 2, 3, 4), branches=tuple(branches))


def _sets():
    from edgekit.stages.artifacts import ObservationSets

    rng = np.random.default_rng(0)

    def draw(n):  # a Discrete(3) one-hot, a MultiBinary(2), a float pair
        return np.concatenate([np.eye(3)[rng.integers(0, 3, n)], rng.integers(0, 2, (n, 2)),
                               rng.normal(size=(n, 2)) * 4], axis=1).astype(np.float32)

    return ObservationSets(calibration=draw(400), held_out=draw(400))


def test_conditioning_centres_logits_per_branch_and_keeps_bernoulli_signs():
    from edgekit.stages.condition import BINARY_LEVEL, ConditioningOptions, condition, model_inputs

    options = ConditioningOptions(finetune=False, input_split=0, widen=False,
                                 per_channel=False)  # the folds alone (exact)
    sets = _sets()
    multi = _graph(MULTI_ARGMAX, "multi_logits", 5, branches=[(0, 3), (3, 5)])
    action = space_spec(spaces.MultiDiscrete([3, 2]), "action")
    done = condition(multi, sets, action, options)
    assert "per branch" in done.applied["output_range"] and "binary_inputs" in done.applied
    # 0 and 1 -> -/+254/255: 127 steps of the 2/255 input step either side of real 0 (exact levels)
    assert done.preprocess.offset[:5] == (0.5,) * 5
    np.testing.assert_allclose(done.preprocess.scale[:5], 0.5 / BINARY_LEVEL)
    only_binary = type(sets)(calibration=sets.calibration[:, :5], held_out=sets.held_out[:, :5])
    import torch  # a first layer for 5 inputs

    small = _graph(MULTI_ARGMAX, "multi_logits", 5, branches=[(0, 3), (3, 5)])
    small.module.body[0] = torch.nn.Linear(5, 16)
    small = dataclasses.replace(small, input_size=5)
    done_small = condition(small, only_binary, action, options)
    assert done_small.preprocess.offset == (0.0,) * 5 and done_small.preprocess.scale == (1.0,) * 5  # [0, 1]
    post = PostProcessor(MULTI_ARGMAX, action)
    before = post(multi.outputs(sets.held_out))
    after_raw = done.graph.outputs(model_inputs(sets.held_out, done.preprocess))
    np.testing.assert_array_equal(post(after_raw), before)
    for lo, hi in ((0, 3), (3, 5)):  # each branch's common offset is gone
        assert abs(float(after_raw[:, lo:hi].mean())) < 0.5 < abs(float(multi.outputs(sets.held_out)[:, lo:hi].mean()))

    bits = _graph(THRESHOLD, "bernoulli_logits", 3)
    space = space_spec(spaces.MultiBinary(3), "action")
    done = condition(bits, sets, space, options)
    assert "kept" in done.applied["output_range"]
    raw = done.graph.outputs(model_inputs(sets.held_out, done.preprocess))
    np.testing.assert_allclose(raw, bits.outputs(sets.held_out), atol=1e-5)  # not centred: the sign decides


# --- runtime: predict, serve, episodes, verify, bench on the new spaces -------------------------------


@pytest.fixture(scope="module")
def dict_policy(built_bundle):
    from edgekit.runtime import EdgePolicy

    return EdgePolicy.load(built_bundle("ppo-dict-multidiscrete").bundle_dir, device="cpu")


def test_dict_bundle_serves_json_objects(dict_policy):
    from edgekit.runtime.bad_obs import BadObsGuard
    from edgekit.runtime.serve import handle_line

    obs = {"pos": [0.1, -0.4], "cell": 2, "bins": [1, 0], "signs": [1, 0]}
    expected = dict_policy.predict({k: np.asarray(v) for k, v in obs.items()}).tolist()
    assert all(isinstance(v, int) for v in expected) and len(expected) == 2
    assert json.loads(handle_line(dict_policy, json.dumps(obs))) == {"action": expected}
    assert json.loads(handle_line(dict_policy, json.dumps({"id": 4, "obs": obs}))) == {"id": 4, "action": expected}
    reply = json.loads(handle_line(dict_policy, json.dumps({**obs, "cell": 7})))
    assert "outside Discrete(3)" in reply["error"]
    guard = BadObsGuard.for_space(dict_policy.manifest.action_space, "zero")
    reply = json.loads(handle_line(dict_policy, json.dumps({"pos": [0, 0]}), guard))
    assert reply["action"] == [0, 0] and reply["substituted"] == "zero" and "lacks" in reply["reason"]


def test_discrete_observation_bundle_takes_plain_numbers(built_bundle):
    from edgekit.runtime import EdgePolicy
    from edgekit.runtime.serve import handle_line

    policy = EdgePolicy.load(built_bundle("ppo-discrete-multibinary").bundle_dir, device="cpu")
    assert policy.fast_path
    actions = policy.predict(np.arange(5))
    assert actions.shape == (5, 3) and actions.dtype == np.float32
    for k in range(5):
        for obs in (k, np.int64(k), np.array(k)):
            np.testing.assert_array_equal(policy.predict(obs), actions[k])
        assert json.loads(handle_line(policy, str(k))) == {"action": actions[k].tolist()}
    assert "outside" in json.loads(handle_line(policy, "5"))["error"]


def test_episodes_verify_and_bench_run_on_a_dict_bundle(built_bundle, dict_policy):
    from coverage_envs import HORIZON

    from edgekit.host.gym_envs import make_env
    from edgekit.runtime.bench import bench_policy
    from edgekit.runtime.episodes import run_episodes
    from edgekit.runtime.verify import verify_bundle

    env = make_env(dict_policy.manifest.env_id)
    try:
        results = run_episodes(dict_policy, env, 2, seed=0)
    finally:
        env.close()
    assert [r.length for r in results] == [HORIZON, HORIZON]
    result = verify_bundle(built_bundle("ppo-dict-multidiscrete").bundle_dir, device="cpu")
    assert result.passed and result.action_mismatches == 0 and result.samples == 256
    bench = bench_policy(dict_policy, iterations=50, warmup=5)
    assert bench.predict["p50_us"] > 0 and bench.invoke["p50_us"] > 0


def test_calibration_data_as_observations_or_features(tmp_path, built_bundle):
    from edgekit.core.errors import UsageError
    from edgekit.stages.rollouts import load_observations

    dict_space = space_spec(OBSERVATION_SPACES["dict"], "observation")
    encoder = ObservationEncoder(dict_space)
    batch = encoder.sample(np.random.default_rng(0), 150)
    features, _ = encoder.encode(batch)
    np.savez(tmp_path / "keys.npz", **batch)
    np.testing.assert_array_equal(load_observations(tmp_path / "keys.npz", encoder), features)
    np.save(tmp_path / "features.npy", features)
    np.testing.assert_array_equal(load_observations(tmp_path / "features.npy", encoder), features)
    bundle = built_bundle("ppo-dict-multidiscrete").bundle_dir  # another bundle's calibration.npz works too
    with np.load(bundle / "calibration.npz") as data:
        np.testing.assert_array_equal(load_observations(bundle / "calibration.npz", encoder), data["calibration"])
    broken = features.copy()
    broken[:, 0] = 0.5
    np.save(tmp_path / "broken.npy", broken)
    with pytest.raises(UsageError, match="not the flat features"):
        load_observations(tmp_path / "broken.npy", encoder)
    discrete = ObservationEncoder(space_spec(spaces.Discrete(5), "observation"))
    np.save(tmp_path / "cells.npy", np.arange(200) % 5)
    assert load_observations(tmp_path / "cells.npy", discrete).tolist()[:2] == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]]
    np.save(tmp_path / "bad-cells.npy", np.arange(200))
    with pytest.raises(UsageError, match="does not fit the observation space"):
        load_observations(tmp_path / "bad-cells.npy", discrete)


def test_bundle_reports_of_new_spaces_follow_the_schema(built_bundle):
    """Reports written by the build (in process, closed loop included) for multi-branch actions and
    one-hot inputs: schema, per-branch figures, the discrete-inputs coverage, the HTML tables."""
    from edgekit.report import schema

    for name in ("ppo-dict-multidiscrete", "a2c-multibinary-multibinary", "dqn-discrete-discrete"):
        bundle = built_bundle(name).bundle_dir
        report = json.loads((bundle / "report.json").read_text())
        assert schema.problems(report) == [] and schema._check(report, schema.SCHEMA, "$") == []
        features = report["coverage"]["features"]
        assert len(features) == Manifest.read(bundle).observation_space.features
        inputs = report["coverage"]["discrete_inputs"]
        assert inputs["exact_levels"] is True and inputs["groups"]
        html = (bundle / "report.html").read_text(encoding="utf-8")
        assert "One-hot and binary inputs" in html
        discrete = report["validation"]["discrete"]
        if name != "dqn-discrete-discrete":
            assert len(discrete["branches"]) in (2, 3) and 0 <= discrete["action_agreement"] <= discrete["agreement"]
            assert "whole action agrees" in html
    assert [f["name"] for f in json.loads((built_bundle("ppo-dict-multidiscrete").bundle_dir / "report.json")
                                          .read_text())["coverage"]["features"]][:3] == \
        ["bins[0]==0", "bins[0]==1", "bins[1]==0"]


def test_vecnormalize_with_non_box_observations_is_refused(trained_model, tmp_path):
    from edgekit.host.loading import load_agent
    from edgekit.host.loading.source import resolve_source
    from edgekit.pipeline import BuildOptions, _vecnormalize

    stats = tmp_path / "vecnormalize.pkl"
    stats.write_bytes(b"not read")
    options = BuildOptions(model=trained_model("ppo-discrete-box"), env_id="x", output=tmp_path / "b",
                           vecnormalize=stats)
    with pytest.raises(UnsupportedModelError, match="VecNormalize.*Discrete\\(5\\)"):
        _vecnormalize(options, resolve_source(options.model), {}, load_agent(options.model))


@pytest.mark.parametrize("name", ["ppo-dict-multidiscrete", "dqn-discrete-discrete", "a2c-multibinary-multibinary",
                                  "sac-multidiscrete-box", "ppo-intbox-discrete"])
def test_the_direct_int8_step_equals_the_general_path(built_bundle, name, monkeypatch):
    """One observation as the env returns it goes straight to int8 levels (runtime/encoded_step.py); it must
    give exactly what encoding with numpy and quantizing gives, and leave everything else to that path."""
    from edgekit.runtime import EdgePolicy

    policy = EdgePolicy.load(built_bundle(name).bundle_dir, device="cpu")
    batch = policy.encoder.sample(np.random.default_rng(3), 300)
    rows = [{k: v[i] for k, v in batch.items()} for i in range(300)] if isinstance(batch, dict) else list(batch)
    general = [policy._predict_general(row) for row in rows]
    if policy.encoder.identity:
        return  # a Box (here an integer one) takes step.py's path, already compared in test_build_e2e
    monkeypatch.setattr(policy.encoder, "encode", lambda _obs: pytest.fail("the direct step fell back"))
    for row, want in zip(rows, general):
        got = policy.predict(row)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    monkeypatch.undo()
    as_json = json.loads(json.dumps(batch[0].tolist() if not isinstance(batch, dict) else
                                    {k: v[0].tolist() for k, v in batch.items()}))
    np.testing.assert_array_equal(policy.predict(as_json), general[0])  # lists: the general path


def test_multi_branch_metrics_count_decisions_and_whole_actions():
    from edgekit.core.metrics import describe, fidelity_metrics

    space = space_spec(spaces.MultiDiscrete([3, 1, 2]), "action")  # a one-class branch always agrees
    rng = np.random.default_rng(4)
    float_out = rng.normal(size=(200, 6)).astype(np.float32)
    int8_out = float_out + rng.normal(scale=0.05, size=float_out.shape).astype(np.float32)
    post = PostProcessor(MULTI_ARGMAX, space)
    fa, ia = post(float_out), post(int8_out)
    metrics = fidelity_metrics(float_out, int8_out, fa, ia, space, 0.01)
    d = metrics["discrete"]
    assert d["agreement"] == pytest.approx(float(np.mean(fa == ia)))
    assert d["action_agreement"] == pytest.approx(float(np.all(fa == ia, axis=1).mean()))
    assert [b["name"] for b in d["branches"]] == ["branch 0", "branch 1", "branch 2"]
    assert d["branches"][1]["agreement"] == 1.0 and d["branches"][1]["decisive_share"] == 1.0
    assert np.isfinite(d["float_gap_median"]) and "whole actions" in describe(metrics)
    json.dumps(metrics, allow_nan=False)
    bits = space_spec(spaces.MultiBinary(3), "action")
    post = PostProcessor(THRESHOLD, bits)
    m = fidelity_metrics(float_out[:, :3], int8_out[:, :3], post(float_out[:, :3]), post(int8_out[:, :3]), bits, 0.01)
    assert [b["name"] for b in m["discrete"]["branches"]] == ["bit 0", "bit 1", "bit 2"]
    assert m["discrete"]["decision"].startswith("sign")


def test_dict_runtime_imports_no_heavy_packages(built_bundle):
    """A fresh interpreter that runs a Dict bundle (encoder, direct int8 step) imports numpy and TFLite only."""
    import subprocess
    import sys

    from conftest import REPO

    bundle = built_bundle("ppo-dict-multidiscrete").bundle_dir
    code = f"""
import sys, warnings
import numpy as np
warnings.simplefilter("ignore")
from edgekit.runtime import EdgePolicy
p = EdgePolicy.load({str(bundle)!r}, device="auto")
obs = {{"pos": np.array([0.1, 0.2], np.float32), "cell": 1, "bins": np.array([1, 2]),
       "signs": np.array([0, 1], np.int8)}}
p.predict(obs); p.predict({{k: [v, v] for k, v in obs.items()}})
heavy = sorted(m for m in ("torch", "tensorflow", "onnx", "onnxruntime", "onnx2tf", "stable_baselines3",
               "gymnasium", "keras", "tf_keras", "jax") if m in sys.modules)
print("HEAVY", heavy)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout


def test_coverage_names_one_hot_classes_the_calibration_never_saw():
    from edgekit.bundle.manifest import Preprocess
    from edgekit.core.quant import QuantParams
    from edgekit.report.coverage import discrete_inputs
    from edgekit.stages.condition import BINARY_LEVEL

    encoder = ObservationEncoder(space_spec(spaces.Dict({"cell": spaces.Discrete(5), "x": spaces.Box(-1, 1, (1,))}),
                                            "observation"))
    calibration, _ = encoder.encode({"cell": np.arange(200) % 4, "x": np.zeros((200, 1))})  # never cell 4
    held_out, _ = encoder.encode({"cell": np.arange(200) % 5, "x": np.zeros((200, 1))})
    pre = Preprocess(offset=(0.5,) * 5 + (0.0,), scale=(0.5 / BINARY_LEVEL,) * 5 + (1.0,))
    section = discrete_inputs(calibration, held_out, encoder, pre, QuantParams(2 / 255, -1))
    assert section["unseen_in_calibration"] == ["cell==4"] and section["exact_levels"] is True
    group = section["groups"][0]
    assert group["calibration_on"] == [50, 50, 50, 50, 0] and group["held_out_on"] == [40] * 5
    assert group["int8_levels"][0] == pytest.approx([-128.0, 126.0])
    inexact = discrete_inputs(calibration, held_out, encoder, Preprocess.identity(6), QuantParams(2 / 255, -1))
    assert inexact["exact_levels"] is False  # a plain conversion: 1 falls between two levels
