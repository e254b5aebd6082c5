"""Published RL Zoo agents of every family load as their releases saved them (issue 15).

Test data: tests/data/zoo-agents (the RL Zoo's published agents, MIT; README there). This file covers
loading and env resolution, which are quick; tests/test_zoo_agents.py builds the agents (slow).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from conftest import EXAMPLE_MODEL, REPO, run_cli

from edgekit.core.env_spec import EnvSpec
from edgekit.core.errors import ModelFileError

ZOO = REPO / "tests" / "data" / "zoo-agents"
ARS_SWIMMER = ZOO / "ars" / "Swimmer-v3_1" / "Swimmer-v3.zip"


def _state_dict(path):
    import torch

    with zipfile.ZipFile(path) as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)


def _rewrite_policy(source, target, params):
    """A copy of ``source`` whose policy.pth holds ``params`` (every other member unchanged)."""
    import torch

    buffer = io.BytesIO()
    torch.save(params, buffer)
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            new.writestr(item, buffer.getvalue() if item.filename == "policy.pth" else old.read(item.filename))
    return target


def test_ars_linear_policy_of_sb3_contrib_1_3_loads_under_todays_names():
    """sb3-contrib 1.3 saved ARSLinearPolicy's layer as a bare Linear (action_net.weight); today it is
    action_net.0 of a Sequential, and a strict load refused the file."""
    from edgekit.host.loading import load_agent

    saved = _state_dict(ARS_SWIMMER)
    assert set(saved) == {"action_net.weight"}  # the published file's layout
    agent = load_agent(ARS_SWIMMER)
    assert agent.algorithm.name == "ARS" and agent.policy == "LinearPolicy"
    assert any("action_net.weight" in note and "sb3-contrib 1.3" in note for note in agent.notes)
    weight = saved["action_net.weight"].numpy()
    obs = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
    actions = agent.model.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(actions, np.clip(obs @ weight.T, -1.0, 1.0), rtol=1e-5, atol=1e-6)


def test_a_rename_never_makes_a_wrong_file_load(tmp_path):
    """The renamed tensors must fit the rebuilt policy exactly: a wrong shape stays refused."""
    import torch

    from edgekit.host.loading import load_agent

    wrong = _rewrite_policy(ARS_SWIMMER, tmp_path / "wrong.zip", {"action_net.weight": torch.zeros(2, 5)})
    with pytest.raises(ModelFileError, match="does not fit its ARSLinearPolicy"):
        load_agent(wrong)
    extra = _rewrite_policy(ARS_SWIMMER, tmp_path / "extra.zip",
                            {"action_net.weight": torch.zeros(2, 8), "other.weight": torch.zeros(1)})
    with pytest.raises(ModelFileError, match="does not fit its ARSLinearPolicy"):
        load_agent(extra)


# --- the space check: decided by what the policy computes ---------------------------------------------


def _box(low, high, dtype="float32"):
    from edgekit.core.spaces import SpaceSpec

    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return SpaceSpec(kind="box", shape=low.shape, dtype=dtype, low=tuple(low.reshape(-1).tolist()),
                     high=tuple(high.reshape(-1).tolist()))


def test_observation_bounds_and_dtype_do_not_matter_to_an_mlp_policy():
    """gym's LunarLander-v2 had infinite observation bounds, gymnasium's -v3 finite ones: the network never
    reads them (SB3 casts the Box to float and flattens it), so the env fits."""
    from edgekit.host.gym_envs import space_difference

    old = _box([-np.inf] * 8, [np.inf] * 8)
    new = _box([-2.5, -2.5, -10, -10, -6.28, -10, 0, 0], [2.5, 2.5, 10, 10, 6.28, 10, 1, 1], "float64")
    assert space_difference(old, new, "observation") is None
    assert space_difference(old, _box([-1] * 7, [1] * 7), "observation") == ""  # the shape is read


def test_action_bounds_matter_and_the_message_shows_which_differ():
    """Action bounds set the clip / unscale of every action: a difference is refused, and the message says
    which bounds differ instead of printing two identical descriptions."""
    import gymnasium as gym

    from edgekit.core.errors import EnvironmentMismatchError
    from edgekit.host.gym_envs import check_env_fits, space_difference

    assert space_difference(_box([-1, -1], [1, 1]), _box([-1, -1], [1, 1], "float64"), "action") is None
    differ = space_difference(_box([-1, -1], [1, 1]), _box([-1, -2], [1, 2]), "action")
    assert differ == "low[1] -1 vs -2, high[1] 1 vs 2"

    class Env:  # the two spaces of an env, as check_env_fits reads them
        observation_space = gym.spaces.Box(-np.inf, np.inf, (8,))
        action_space = gym.spaces.Box(np.array([-1, -2], np.float32), np.array([1, 2], np.float32))

    with pytest.raises(EnvironmentMismatchError, match=r"actions Box\(2,\) in .* has Box\(2,\) in .*low\[1\] -1 vs -2"):
        check_env_fits("Some-v0", Env(), _box([0] * 8, [1] * 8), _box([-1, -1], [1, 1]))
    check_env_fits("Some-v0", Env(), _box([0] * 8, [1] * 8), _box([-1, -2], [1, 2]))  # observation bounds: fine


def test_image_bounds_still_matter():
    """A uint8 0..255 Box is SB3's image space (divided by 255): a Box of another range is not."""
    from edgekit.host.gym_envs import space_difference

    image = _box(np.zeros((3, 8, 8)), np.full((3, 8, 8), 255), "uint8")
    other = _box(np.zeros((3, 8, 8)), np.ones((3, 8, 8)), "float32")
    assert space_difference(image, other, "observation") is not None
    assert space_difference(image, image, "observation") is None


# --- env ids: renamed, retired, registered by a package --------------------------------------------------


def _spaces_of(env_id, **kwargs):
    import gymnasium as gym

    from edgekit.host.gym_envs import space_spec

    env = gym.make(env_id, **kwargs)
    try:
        return space_spec(env.observation_space, "observation"), space_spec(env.action_space, "action")
    finally:
        env.close()


def test_a_renamed_id_maps_to_the_version_whose_spaces_fit(tmp_path):
    """Pendulum-v0 is Pendulum-v1 in gymnasium: same spaces, so the build uses it and says so in one line."""
    from edgekit.pipeline import BuildOptions, load_model

    loaded = load_model(BuildOptions(model=EXAMPLE_MODEL, env_id="Pendulum-v0", output=tmp_path / "b"))
    assert loaded.env == EnvSpec("Pendulum-v1")
    assert any(note.startswith("Pendulum-v0 is not registered in this gymnasium: using Pendulum-v1")
               for note in loaded.notes)


def test_a_renamed_id_whose_versions_do_not_fit_names_what_each_returns(tmp_path):
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "MountainCarContinuous-v7", "-o", str(tmp_path / "b"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, proc.stderr
    assert "MountainCarContinuous-v7 is not registered" in error[0]
    assert "returns the model's Box(3,) -> Box(1,)" in error[0]
    assert "MountainCarContinuous-v0 returns Box(2,) -> Box(1,)" in error[0]
    assert not (tmp_path / "b").exists()


def test_retired_mujoco_ids_map_to_the_nearest_version_that_fits():
    """MuJoCo -v3 ids need the retired mujoco-py; -v4 runs on today's bindings with the same layout."""
    pytest.importorskip("mujoco")
    from edgekit.host.env_versions import resolve_env

    obs, act = _spaces_of("Hopper-v4")
    resolved = resolve_env(EnvSpec("Hopper-v3"), obs, act)
    assert resolved.spec == EnvSpec("Hopper-v4")
    assert "Hopper-v3 cannot be made here" in resolved.notes[0] and "using Hopper-v4" in resolved.notes[0]
    humanoid_obs, humanoid_act = _spaces_of("Humanoid-v4")
    assert humanoid_obs.shape == (376,)  # Humanoid-v5 has 348: v4 is the one
    assert resolve_env(EnvSpec("Humanoid-v3"), humanoid_obs, humanoid_act).spec == EnvSpec("Humanoid-v4")


def test_ant_v3_layout_names_the_options_that_restore_it():
    """Ant-v3 agents saw 111 features (27 + 84 contact forces); Ant-v4 returns 27 by default and Ant-v5 105:
    the build stops and names Ant-v4's use_contact_forces, which returns the 111. mujoco-py 2.x returned the
    contact forces as zeros, today's MuJoCo computes them: the agent's VecNormalize statistics choose."""
    pytest.importorskip("mujoco")
    from edgekit.host.env_versions import EnvironmentLayoutError, resolve_env

    obs, act = _spaces_of("Ant-v4", use_contact_forces=True)
    assert obs.shape == (111,)
    zero = {"use_contact_forces": True, "contact_force_range": [0.0, 0.0]}
    never_varied, varied = np.full(111, 0.5), np.full(111, 0.5)
    never_varied[27:] = 1e-4  # sqrt(0 + VecNormalize's epsilon)
    for training_std, kwargs, because in ((None, zero, ""), (never_varied, zero, "never varied in training"),
                                          (varied, {"use_contact_forces": True}, "varied in training")):
        with pytest.raises(EnvironmentLayoutError) as caught:
            resolve_env(EnvSpec("Ant-v3"), obs, act, training_std)
        error = caught.value
        assert "Ant-v4 returns Box(27,)" in error.message and "Ant-v5 returns Box(105,)" in error.message
        assert error.suggestion == EnvSpec("Ant-v4", kwargs=kwargs) and because in error.message
        assert f"--env Ant-v4 --env-kwargs '{json.dumps(kwargs, sort_keys=True)}'" in error.hint


def test_ids_of_env_packages_are_registered_by_importing_them_and_a_missing_one_is_named(monkeypatch):
    """PandaReach-v3 exists once panda-gym is imported: make_env imports the package its table names for
    the id's family (never a module a file names); a package that is not installed is named."""
    import subprocess
    import sys

    pytest.importorskip("panda_gym")
    code = ("from edgekit.host.gym_envs import make_env; import sys; env = make_env('PandaReach-v3'); "
            "print(sorted(env.observation_space.spaces)); assert 'panda_gym' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "['achieved_goal', 'desired_goal', 'observation']" in proc.stdout
    import edgekit.host.gym_envs as envs
    from edgekit.core.errors import MissingDependencyError

    monkeypatch.setattr(envs, "ENV_PACKAGES", (("edgekit_no_such_package", "edgekit-no-such", ("NoSuchBot",)),))
    with pytest.raises(MissingDependencyError, match="NoSuchBotReach-v1 is an environment of edgekit-no-such") as e:
        envs.make_env("NoSuchBotReach-v1")
    assert e.value.hint == "pip install edgekit-no-such"


class _BrokenEnv:
    def __init__(self):
        raise AssertionError("joint type")


def test_an_env_whose_own_code_fails_is_one_line_naming_where():
    """gymnasium-robotics' FetchReach-v4 fails inside its own code with mujoco 4 (an AssertionError): the
    user gets one line saying where, not a traceback."""
    import gymnasium as gym

    from edgekit.core.errors import EnvironmentUnavailableError
    from edgekit.host.gym_envs import make_env

    gym.register("edgekit-test/Broken-v0", entry_point=_BrokenEnv)
    with pytest.raises(EnvironmentUnavailableError) as caught:
        make_env("edgekit-test/Broken-v0")
    assert "edgekit-test/Broken-v0 could not be made here: AssertionError: joint type in test_zoo_loading.py:" \
        in caught.value.message


# --- training wrappers edgekit reproduces; layouts no current SB3 produces ------------------------------


def test_time_feature_wrapper_of_the_config_is_reproduced_and_recorded(tmp_path):
    """rl-zoo3 trained the TQC PandaReach agent in sb3-contrib's TimeFeatureWrapper (config.yml's env_wrapper):
    its 'observation' key has a 7th feature, the remaining time. The env spec reproduces it, the manifest
    form records it, and a wrapper edgekit does not reproduce is refused by name."""
    pytest.importorskip("panda_gym")
    from edgekit.core.env_wrappers import WrapperSpec, from_zoo_config
    from edgekit.core.errors import BundleError, UnsupportedModelError
    from edgekit.host.gym_envs import make_env
    from edgekit.pipeline import BuildOptions, load_model

    loaded = load_model(BuildOptions(model=ZOO / "tqc" / "PandaReach-v1_1", env_id=None, output=tmp_path / "b"))
    assert loaded.env == EnvSpec("PandaReach-v3", wrappers=(WrapperSpec("TimeFeatureWrapper", {}),))
    assert any("1 - t / max_steps" in note for note in loaded.notes)
    env = make_env(loaded.env)
    try:
        obs, _ = env.reset(seed=0)
        assert obs["observation"].shape == (7,) and obs["observation"][-1] == 1.0
        obs, *_ = env.step(env.action_space.sample())
        assert obs["observation"][-1] == pytest.approx(1 - 1 / 50)  # PandaReach's episodes: 50 steps
    finally:
        env.close()
    assert EnvSpec.from_dict(loaded.env.to_dict(), "PandaReach-v3") == loaded.env
    assert "wrappers" not in EnvSpec("Pendulum-v1").to_dict()  # manifests without wrappers are as before
    with pytest.raises(BundleError, match="env.wrappers"):
        EnvSpec.from_dict({"id": "Pendulum-v1", "wrappers": [{"name": "os.system", "kwargs": {}}]}, "Pendulum-v1")
    assert from_zoo_config([{"sb3_contrib.common.wrappers.TimeFeatureWrapper": {"max_steps": 200}}]) == \
        (WrapperSpec("TimeFeatureWrapper", {"max_steps": 200}),)
    with pytest.raises(UnsupportedModelError, match="'my_pkg.Wrapper', which edgekit does not reproduce"):
        from_zoo_config("my_pkg.Wrapper")
    with pytest.raises(UnsupportedModelError, match="with options"):
        from_zoo_config({"TimeFeatureWrapper": {"max_steps": "1000; import os"}})


def _legacy_her_zip(target):
    """A small zip with the fields SB3 < 1.1's HER class saved (the published FetchReach one is 3 MB)."""
    with zipfile.ZipFile(ARS_SWIMMER) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "data":
                fields = json.loads(data)
                fields.update(model_class={"__module__": "stable_baselines3.sac.sac"},
                              goal_selection_strategy={"_name_": "FUTURE"})
                data = json.dumps(fields).encode()
            new.writestr(item, data)
    return target


def test_sb3_1_0_her_layout_is_refused_with_its_reason(tmp_path):
    """SB3 < 1.1's HER class saved model_class and goal_selection_strategy beside the algorithm's fields and
    flattened the goal Dict into one Box: refused with that reason before anything is unpickled."""
    from edgekit.core.errors import UnsupportedModelError
    from edgekit.host.loading import load_agent

    legacy = _legacy_her_zip(tmp_path / "her.zip")
    with pytest.raises(UnsupportedModelError, match="HER class.*ObsDictWrapper.*neither today's SB3 nor edgekit"):
        load_agent(legacy)


def test_input_coverage_measures_vecnormalized_features_as_the_runtime_feeds_them():
    """The report's coverage scaled raw observations with the per-feature scaling of the *normalized* ones:
    every VecNormalize'd agent (most of the RL Zoo's) showed features clipped by hundreds of int8 steps that
    the int8 model never clips. Levels, int8 ranges and steps now follow the runtime (normalize, then scale)."""
    from edgekit.bundle.manifest import ObsNormalization, Preprocess
    from edgekit.core.quant import QuantParams
    from edgekit.report.coverage import input_coverage

    rng = np.random.default_rng(0)
    mean, std = np.array([5.0, -100.0]), np.array([2.0, 50.0])
    raw = mean + std * rng.uniform(-1, 1, size=(500, 2))
    norm = ObsNormalization(mean=tuple(mean), std=tuple(std), clip=10.0)
    normalized = norm.apply(raw)
    low, high = normalized.min(axis=0), normalized.max(axis=0)
    quant = QuantParams(scale=2 / 255, zero_point=0)
    preprocess = Preprocess(offset=tuple((low + high) / 2), scale=tuple((high - low) / 2), normalize=norm)
    cover = input_coverage(raw[:250], raw[250:], preprocess, quant, (2,))
    for feature in cover["features"]:
        column = raw[:, feature["index"]]
        assert feature["max_clipped_steps"] <= 1.0 and not feature["flagged"], feature
        assert feature["int8_range"][0] == pytest.approx(column.min(), rel=0.02, abs=0.05)
        assert feature["int8_step"] == pytest.approx(np.ptp(column) / 255, rel=0.02)
    levels = np.rint(preprocess.model_inputs(raw[250:]) / quant.scale)  # as the runtime feeds the model
    reported = np.array([f["held_out_levels"] for f in cover["features"]])
    assert np.abs(reported - np.stack([levels.min(axis=0), levels.max(axis=0)], axis=1)).max() <= 1.0


def test_a_known_breakage_between_env_package_and_simulator_names_the_requirement_that_works():
    """gymnasium-robotics 1.4.2's FetchReach-v4 fails inside its own code with mujoco >= 3.12 (measured: 3.11
    works): the one-line error names the requirement instead of a generic "install versions that work"."""
    from importlib import metadata

    pytest.importorskip("gymnasium_robotics")
    mujoco = tuple(int(p) for p in metadata.version("mujoco").split(".")[:2])
    if mujoco < (3, 12):
        pytest.skip(f"mujoco {mujoco} runs FetchReach-v4")
    from edgekit.core.errors import EnvironmentUnavailableError
    from edgekit.host.gym_envs import make_env

    with pytest.raises(EnvironmentUnavailableError) as caught:
        make_env("FetchReach-v4")
    assert "gymnasium_robotics/utils/mujoco_utils.py" in caught.value.message
    assert caught.value.hint.startswith("pip install 'mujoco<3.12'")
    # a retired id whose only newer version fails that way: the env's packages are the problem, not a layout
    import gymnasium as gym

    from edgekit.host.env_versions import resolve_env
    from edgekit.host.gym_envs import space_spec

    box = gym.spaces.Box(-np.inf, np.inf, (3,))
    obs = space_spec(gym.spaces.Dict({"achieved_goal": box, "desired_goal": box,
                                      "observation": gym.spaces.Box(-np.inf, np.inf, (10,))}), "observation")
    with pytest.raises(EnvironmentUnavailableError) as caught:
        resolve_env(EnvSpec("FetchReach-v1"), obs, space_spec(gym.spaces.Box(-1, 1, (4,)), "action"))
    assert "FetchReach-v4 cannot be made" in caught.value.message
    assert caught.value.hint.startswith("pip install 'mujoco<3.12'")
