"""Agents published by the RL Baselines3 Zoo (SB3 1.0, pickled under `gym`), deployed as they are.

Test data: tests/data/rl-zoo-agents (the zoo's pre-trained agents, MIT; see its README). No `gym`
is installed: the restricted loader maps the pickled `gym.spaces` onto gymnasium; the A2C agent was
trained behind VecNormalize, whose statistics rl-zoo3 saved beside the model. Each agent is built
from its zoo run folder alone: no --env, no statistics file named.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli

from edgekit.bundle import Manifest

ZOO = REPO / "tests" / "data" / "rl-zoo-agents"
AGENTS = {  # run folder -> (env id, trained behind VecNormalize)
    "a2c/Acrobot-v1_1": ("Acrobot-v1", True),
    "ppo/CartPole-v1_1": ("CartPole-v1", False),
    "sac/MountainCarContinuous-v0_1": ("MountainCarContinuous-v0", False),
}
# The fidelity these agents reach with edgekit's defaults on 1,000 calibration observations, with a
# margin (the full-size figures: docs/fidelity.md).
MEAN_SHARE_MAX, P99_SHARE_MAX, DECISIVE_MIN = 0.015, 0.08, 0.97

pytestmark = pytest.mark.slow


class _GymBlocker(importlib.abc.MetaPathFinder):
    """Makes gym unimportable even where it is installed (SB3 itself probes for it: patch_gym)."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if name == "gym" or name.startswith("gym."):
            raise ImportError(f"test: {name} must not be imported")
        return None


def _no_unpickling(*_args, **_kwargs):
    raise AssertionError("pickled data was decoded by pickle/cloudpickle, which can run code")


class _NoUnpickler(pickle.Unpickler):
    """Stands in for pickle.Unpickler (which torch.load without weights_only uses): it refuses to load."""

    def load(self):  # noqa: ANN201 - pickle's protocol
        _no_unpickling()


@pytest.fixture(scope="module")
def zoo_bundles(tmp_path_factory) -> dict[str, Path]:
    """Each agent built from its run folder, with pickle and cloudpickle disabled and gym blocked: the
    build succeeds, so no pickled code ran (only edgekit's restricted unpickler and torch's weights-only
    loader decoded anything) and gym was never imported."""
    import cloudpickle

    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.stages.rollouts import RolloutRecipe

    assert importlib.util.find_spec("gym") is None  # the point: no gym needed
    out = tmp_path_factory.mktemp("zoo")
    blocker = _GymBlocker()
    patched = [(pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (cloudpickle, "loads"),
               (cloudpickle, "load")]
    saved = [(module, name, getattr(module, name)) for module, name in patched]
    sys.meta_path.insert(0, blocker)
    bundles = {}
    try:
        for module, name in patched:
            setattr(module, name, _NoUnpickler if name == "Unpickler" else _no_unpickling)
        for folder in AGENTS:
            bundle = out / folder.replace("/", "-")
            build(BuildOptions(model=ZOO / folder, env_id=None, output=bundle,
                               recipe=RolloutRecipe(calibration_steps=1000, held_out_steps=1000),
                               report=ReportOptions(episodes=2)), Progress(quiet=True))
            bundles[folder] = bundle
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        sys.meta_path.remove(blocker)
    assert "gym" not in sys.modules
    return bundles


def _sb3_reference(folder: str, env_id: str):
    """SB3's own load, given the env's spaces (its pickled gym spaces would need gym), and its stats."""
    import gymnasium
    import stable_baselines3

    zip_path = next((ZOO / folder).glob("*.zip"))
    algo = folder.split("/")[0].upper()
    env = gymnasium.make(env_id)
    never = lambda _progress: 0.0  # noqa: E731
    model = getattr(stable_baselines3, algo).load(
        zip_path, device="cpu", custom_objects={"observation_space": env.observation_space,
                                                "action_space": env.action_space, "lr_schedule": never,
                                                "learning_rate": 0.0, "clip_range": never})
    env.close()
    stats = ZOO / folder / env_id / "vecnormalize.pkl"
    return model, (_vecnormalize_by_hand(stats) if stats.is_file() else None)


def _vecnormalize_by_hand(path: Path):
    """The zoo's statistics read with pickle itself, gym's names mapped to gymnasium (trusted test data)."""

    class GymAsGymnasium(pickle.Unpickler):
        def find_class(self, module, name):  # noqa: ANN001 - pickle's protocol
            return super().find_class(module.replace("gym.", "gymnasium.", 1) if module.startswith("gym.")
                                      else module, name)

    with path.open("rb") as f:
        state = GymAsGymnasium(f).load()
    mean, var = state.obs_rms.mean, state.obs_rms.var
    return lambda obs: np.clip((obs - mean) / np.sqrt(var + state.epsilon), -state.clip_obs, state.clip_obs)


@pytest.mark.parametrize("folder", sorted(AGENTS))
def test_zoo_run_folder_deploys_close_to_sb3_predict(zoo_bundles, folder):
    from edgekit.runtime import EdgePolicy

    env_id, vecnormalize = AGENTS[folder]
    bundle = zoo_bundles[folder]
    manifest = Manifest.read(bundle)
    assert manifest.env_id == env_id  # named by the run folder
    assert manifest.source["sb3_version"] == "1.0rc0"
    assert (manifest.preprocess.normalize is not None) == vecnormalize  # found beside the model
    model, normalize = _sb3_reference(folder, env_id)
    policy = EdgePolicy.load(bundle, device="cpu")
    with np.load(bundle / "calibration.npz") as data:
        obs = data["held_out"].reshape(-1, *policy.observation_shape)
    expected = model.predict(normalize(obs).astype(np.float32) if normalize else obs, deterministic=True)[0]
    actual = policy.predict(obs)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if manifest.action_space.kind == "box":
        share = np.abs(actual - expected) / (manifest.action_space.high_array() - manifest.action_space.low_array())
        assert share.mean() <= MEAN_SHARE_MAX and np.quantile(share, 0.99) <= P99_SHARE_MAX, share.mean()
    else:
        report = json.loads((bundle / "report.json").read_text())
        discrete = report["validation"]["discrete"]
        assert discrete["decisive_agreement"] >= DECISIVE_MIN, discrete
        assert abs(float(np.mean(actual == expected)) - discrete["agreement"]) < 1e-9  # same figure as the report
    loop = json.loads((bundle / "report.json").read_text())["closed_loop"]
    assert loop["normalized_score"] >= 0.95


def test_vecnormalize_fast_step_equals_the_general_path(zoo_bundles):
    """The single-step fast path folds VecNormalize (clamp + affine): same actions as the batch path."""
    import edgekit.runtime.step as step_module
    from edgekit.runtime import EdgePolicy

    bundle = zoo_bundles["a2c/Acrobot-v1_1"]
    with np.load(bundle / "calibration.npz") as data:
        obs = np.concatenate([data["held_out"][:300], data["held_out"][:50] * 40.0]).astype(np.float32)
    for limit in (step_module.SCALAR_LIMIT, 0):  # Python-scalar and numpy variants
        step_module.SCALAR_LIMIT, saved = limit, step_module.SCALAR_LIMIT
        try:
            policy = EdgePolicy.load(bundle, device="cpu")
        finally:
            step_module.SCALAR_LIMIT = saved
        for row in obs:
            assert np.array_equal(policy.predict(row), policy._predict_general(row))
        with pytest.raises(Exception, match="NaN or infinity"):
            policy.predict(np.full_like(obs[0], np.inf))


def test_vecnormalize_statistics_are_read_without_running_code():
    from edgekit.host.loading.source import resolve_source
    from edgekit.host.loading.vecnormalize import load_vecnormalize

    folder = ZOO / "a2c" / "Acrobot-v1_1"
    path = resolve_source(folder).vecnormalize
    assert path == folder / "Acrobot-v1" / "vecnormalize.pkl"
    norm = load_vecnormalize(path, 6)
    by_hand = _vecnormalize_by_hand(path)
    obs = np.random.default_rng(0).normal(size=(50, 6)) * 3
    np.testing.assert_allclose(norm.apply(obs), by_hand(obs), rtol=1e-6, atol=1e-6)
    assert norm.clip == 10.0


def test_missing_vecnormalize_file_is_a_one_line_error(tmp_path):
    proc = run_cli("build", str(ZOO / "a2c" / "Acrobot-v1_1"), "-o", str(tmp_path / "b"),
                   "--vecnormalize", str(tmp_path / "none.pkl"))
    assert proc.returncode != 0 and "do not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_normalize_in_config_without_statistics_is_refused(tmp_path):
    """config.yml says normalize: true, but the statistics were not copied: the policy would misbehave."""
    folder = tmp_path / "Acrobot-v1_1"
    shutil.copytree(ZOO / "a2c" / "Acrobot-v1_1", folder)
    (folder / "Acrobot-v1" / "vecnormalize.pkl").unlink()
    proc = run_cli("build", str(folder), "-o", str(tmp_path / "b"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "trained behind VecNormalize" in proc.stderr and "--vecnormalize" in proc.stderr


def test_zoo_run_folder_and_hub_snapshot_layouts(tmp_path):
    from edgekit.core.errors import UsageError
    from edgekit.host.loading.source import resolve_source

    run_folder = ZOO / "a2c" / "Acrobot-v1_1"
    source = resolve_source(run_folder)
    assert source.model == run_folder / "Acrobot-v1.zip" and source.layout == "rl-zoo3 run folder"
    assert source.env_id == "Acrobot-v1" and source.config == run_folder / "Acrobot-v1" / "config.yml"
    assert resolve_source(run_folder / "Acrobot-v1.zip") == \
        resolve_source(run_folder).__class__(**{**resolve_source(run_folder).__dict__,
                                                "origin": str(run_folder / "Acrobot-v1.zip")})
    hub = _hub_snapshot(tmp_path / "hub-snapshot")
    source = resolve_source(hub)
    assert source.model == hub / "a2c-Acrobot-v1.zip" and source.layout == "hub snapshot"
    assert source.vecnormalize == hub / "vec_normalize.pkl" and source.env_id == "Acrobot-v1"
    assert source.env_kwargs == hub / "env_kwargs.yml"
    shutil.copy(run_folder / "Acrobot-v1.zip", hub / "second.zip")
    with pytest.raises(UsageError, match="2 SB3 model zips"):
        resolve_source(hub)


def _hub_snapshot(folder: Path) -> Path:
    """A folder laid out as the hub's sb3/a2c-Acrobot-v1 repository (model, stats, zoo YAML files)."""
    run_folder = ZOO / "a2c" / "Acrobot-v1_1"
    folder.mkdir(parents=True)
    shutil.copy(run_folder / "Acrobot-v1.zip", folder / "a2c-Acrobot-v1.zip")
    shutil.copy(run_folder / "Acrobot-v1" / "vecnormalize.pkl", folder / "vec_normalize.pkl")
    shutil.copy(run_folder / "Acrobot-v1" / "config.yml", folder / "config.yml")
    (folder / "env_kwargs.yml").write_text("{}\n")
    (folder / "args.yml").write_text("!!python/object/apply:collections.OrderedDict\n- - - algo\n    - a2c\n"
                                     "  - - env\n    - Acrobot-v1\n")
    (folder / "train_eval_metrics.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: not a model
    return folder


def test_hf_repository_from_the_local_hub_cache(tmp_path):
    """hf://sb3/a2c-Acrobot-v1 through huggingface_hub itself, offline, from a cache laid out as the hub's."""
    pytest.importorskip("huggingface_hub")
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--sb3--a2c-Acrobot-v1"
    _hub_snapshot(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "bundle"
    proc = run_cli("build", "hf://sb3/a2c-Acrobot-v1", "-o", str(out), "--calibration-steps", "300",
                   "--validation-steps", "300", "--report-episodes", "0", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "hub snapshot" in proc.stderr and "VecNormalize from" in proc.stderr
    manifest = Manifest.read(out)
    assert manifest.env_id == "Acrobot-v1" and manifest.preprocess.normalize is not None
    missing = run_cli("build", "hf://sb3/ppo-Nothing-v0", "-o", str(tmp_path / "b2"), env=env)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "not in the local cache" in missing.stderr
    bad = run_cli("build", "hf://../etc", "-o", str(tmp_path / "b3"), env=env)
    assert bad.returncode == 2 and "not a hub repository id" in bad.stderr


@pytest.mark.parametrize("folder", sorted(AGENTS))
def test_zoo_configs_are_read_safely(folder):
    from edgekit.host.loading.source import resolve_source
    from edgekit.host.loading.zoo_config import check_zoo_config, read_zoo_config

    path = resolve_source(ZOO / folder).config
    config = read_zoo_config(path)
    assert config["policy"] == "MlpPolicy" and "n_timesteps" in config
    check_zoo_config(config, path)


def test_zoo_config_with_code_or_wrappers_is_refused(tmp_path):
    from edgekit.core.errors import ModelFileError, UnsupportedModelError
    from edgekit.host.loading.zoo_config import check_zoo_config, read_env_kwargs, read_zoo_config

    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.yml"
    hostile.write_text(f"!!python/object/apply:os.system\n- touch {marker}\n")
    with pytest.raises(ModelFileError, match="safely"):
        read_zoo_config(hostile)
    with pytest.raises(ModelFileError, match="safely"):
        read_env_kwargs(hostile)
    assert not marker.exists()
    wrapped = tmp_path / "wrapped.yml"
    wrapped.write_text("!!python/object/apply:collections.OrderedDict\n- - - env_wrapper\n"
                       "    - rl_zoo3.wrappers.HistoryWrapper\n  - - policy\n    - MlpPolicy\n")
    config = read_zoo_config(wrapped)
    assert config["env_wrapper"] == "rl_zoo3.wrappers.HistoryWrapper"
    with pytest.raises(UnsupportedModelError, match="env_wrapper 'rl_zoo3.wrappers.HistoryWrapper'"):
        check_zoo_config(config, wrapped)
    config["env_wrapper"] = "sb3_contrib.common.wrappers.TimeFeatureWrapper"  # reproduced (edgekit.core.env_wrappers)
    check_zoo_config(config, wrapped)
