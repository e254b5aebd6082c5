"""Environments beyond gymnasium's ids: a class of the user's (module:Class), an id a module
registers (--env-module), constructor kwargs (--env-kwargs, or rl-zoo3's env_kwargs.yml), all
recorded in the manifest; a bundle's env that needs a module imported is made only when named."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import EXAMPLE_MODEL, run_cli

from edgekit.bundle import Manifest
from edgekit.core.env_spec import EnvOverride, EnvSpec
from edgekit.core.errors import BundleError, EdgekitError, UsageError

USER_ENVS = '''
import gymnasium
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class ShortPendulum(PendulumEnv):
    """Pendulum with its own 60-step episodes and a gravity argument."""

    def __init__(self, g=10.0, **kwargs):
        super().__init__(g=g, **kwargs)
        self.t = 0

    def reset(self, **kwargs):
        self.t = 0
        return super().reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, _truncated, info = super().step(action)
        self.t += 1
        return obs, reward, terminated, self.t >= 60, info


gymnasium.register("ShortPendulum-v0", entry_point=__name__ + ":ShortPendulum", max_episode_steps=60)
'''


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user-envs")
    (folder / "user_envs.py").write_text(USER_ENVS)
    return folder


@pytest.mark.slow
def test_env_class_with_kwargs_builds_and_plays_when_named(user_module, tmp_path):
    env = {"PYTHONPATH": str(user_module)}
    out = tmp_path / "bundle"
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "user_envs:ShortPendulum", "--env-kwargs", '{"g": 9.0}',
                   "-o", str(out), "--calibration-steps", "300", "--validation-steps", "300",
                   "--report-episodes", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    manifest = Manifest.read(out)
    assert manifest.environment == EnvSpec("user_envs:ShortPendulum", None, {"g": 9.0})
    report = json.loads((out / "report.json").read_text())
    assert report["closed_loop"]["int8"]["lengths"] == [60, 60]  # the class's own episodes were played
    # the bundle names a module: edgekit run does not import it on the bundle's word
    refused = run_cli("run", str(out), "--episodes", "1", env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--env user_envs:ShortPendulum --env-kwargs '{\"g\": 9.0}'" in refused.stderr
    played = run_cli("run", str(out), "--env", "user_envs:ShortPendulum", "--episodes", "1", env=env)
    assert played.returncode == 0, played.stderr
    assert "steps    60" in played.stdout
    registered = run_cli("run", str(out), "--env", "ShortPendulum-v0", "--env-module", "user_envs",
                         "--episodes", "1", env=env)
    assert registered.returncode == 0, registered.stderr
    wrong = run_cli("run", str(out), "--env", "CartPole-v1", "--episodes", "1")
    assert wrong.returncode == 1 and "the model was trained with observations" in wrong.stderr


@pytest.mark.slow
def test_zoo_folder_env_kwargs_and_env_id_come_from_the_layout(tmp_path):
    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.stages.rollouts import RolloutRecipe

    run_folder = tmp_path / "ppo" / "Pendulum-v1_1"
    (run_folder / "Pendulum-v1").mkdir(parents=True)
    shutil.copy(EXAMPLE_MODEL, run_folder / "Pendulum-v1.zip")
    (run_folder / "Pendulum-v1" / "config.yml").write_text(
        "!!python/object/apply:collections.OrderedDict\n- - - policy\n    - MlpPolicy\n")
    (run_folder / "Pendulum-v1" / "env_kwargs.yml").write_text("g: 12.0\n")
    recipe = RolloutRecipe(calibration_steps=200, held_out_steps=200)
    build(BuildOptions(model=run_folder, env_id=None, output=tmp_path / "b", recipe=recipe,
                       report=ReportOptions(episodes=0)), Progress(quiet=True))
    assert Manifest.read(tmp_path / "b").environment == EnvSpec("Pendulum-v1", None, {"g": 12.0})
    # --env-kwargs replaces the file's kwargs
    build(BuildOptions(model=run_folder, env_id=None, output=tmp_path / "c", recipe=recipe, env_kwargs={},
                       report=ReportOptions(episodes=0)), Progress(quiet=True))
    assert Manifest.read(tmp_path / "c").environment == EnvSpec("Pendulum-v1")


def test_make_env_forms():
    from edgekit.host.gym_envs import make_env

    assert make_env(EnvSpec("Pendulum-v1", kwargs={"g": 3.0})).unwrapped.g == 3.0
    by_class = make_env(EnvSpec("gymnasium.envs.classic_control.pendulum:PendulumEnv", kwargs={"g": 4.0}))
    assert type(by_class.unwrapped).__name__ == "PendulumEnv" and by_class.unwrapped.g == 4.0
    assert make_env("gymnasium.envs.classic_control:CartPole-v1").spec.id == "CartPole-v1"
    for bad, needle in [("nope_module_x:Env", "cannot import nope_module_x"),
                        ("gymnasium.envs.classic_control:Nope", "has no env class 'Nope'"),
                        ("Pendulum-v0", "registers Pendulum-v1 instead")]:
        with pytest.raises(EdgekitError, match=needle):
            make_env(bad)
    with pytest.raises(EdgekitError, match="failed when made: TypeError"):
        make_env(EnvSpec("Pendulum-v1", kwargs={"gravity": 1.0}))
    with pytest.raises(UsageError, match="not a Python module name"):
        EnvSpec("Pendulum-v1", module="not a module")


def test_env_override_rules():
    plain, coded = EnvSpec("Pendulum-v1", kwargs={"g": 9.0}), EnvSpec("pkg.envs:MyEnv", kwargs={"a": 1})
    assert EnvOverride().apply(plain) == plain
    assert EnvOverride(kwargs={"g": 1.0}).apply(plain) == EnvSpec("Pendulum-v1", kwargs={"g": 1.0})
    assert EnvOverride(env_id="CartPole-v1").apply(plain) == EnvSpec("CartPole-v1")
    with pytest.raises(UsageError, match="does not do on a bundle's word"):
        EnvOverride().apply(coded)
    with pytest.raises(UsageError):
        EnvOverride().apply(EnvSpec("MyEnv-v0", module="pkg.envs"))
    assert EnvOverride(env_id="pkg.envs:MyEnv").apply(coded) == EnvSpec("pkg.envs:MyEnv")
    assert EnvOverride(module="pkg.envs").apply(EnvSpec("MyEnv-v0", module="pkg.envs")).module == "pkg.envs"


@pytest.mark.parametrize("env", [
    "Pendulum-v1", [], {"id": 3}, {"id": "Pendulum-v1", "module": "os; rm"}, {"id": "Pendulum-v1", "kwargs": []},
    {"id": "Pendulum-v1", "kwargs": {"x": float("nan")}}, {"id": "Other-v0"}, {"id": "bad module:X"},
])
def test_hostile_manifest_env_is_refused(built_bundle, env):
    data = json.loads((built_bundle("ppo-pendulum").bundle_dir / "manifest.json").read_text())
    data["env"] = env
    with pytest.raises(BundleError):
        Manifest.from_dict(data)


def test_bundles_without_env_field_still_read(built_bundle):
    data = json.loads((built_bundle("ppo-pendulum").bundle_dir / "manifest.json").read_text())
    assert data["env"] == {"id": "Pendulum-v1", "module": None, "kwargs": {}}
    del data["env"]
    assert Manifest.from_dict(data).environment == EnvSpec("Pendulum-v1")


def test_env_kwargs_option_errors(tmp_path):
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "--env-kwargs", "{g: 1}",
                   "-o", str(tmp_path / "b"))
    assert proc.returncode == 2 and "--env-kwargs is not valid JSON" in proc.stderr
    proc = run_cli("build", str(EXAMPLE_MODEL), "--env", "Pendulum-v1", "--env-kwargs", "[1]",
                   "-o", str(tmp_path / "b"))
    assert proc.returncode == 2 and "must be a JSON object" in proc.stderr
    proc = run_cli("build", str(EXAMPLE_MODEL), "-o", str(tmp_path / "b"))
    assert proc.returncode == 2 and "which environment" in proc.stderr and "--env" in proc.stderr


@pytest.mark.slow
def test_registered_id_from_a_module_plays_a_dict_bundle(built_bundle):
    """The tests' own envs are registered by importing tests/coverage_envs.py: --env-module names it."""
    from conftest import REPO

    bundle = built_bundle("ppo-dict-discrete").bundle_dir
    env = {"PYTHONPATH": str(REPO / "tests")}
    unknown = run_cli("run", str(bundle), "--episodes", "1", env=env)
    assert unknown.returncode == 1 and "unknown Gymnasium environment id" in unknown.stderr
    played = run_cli("run", str(bundle), "--env-module", "coverage_envs", "--episodes", "2", env=env)
    assert played.returncode == 0, played.stderr
    assert "mean return" in played.stdout and "over 2 episodes" in played.stdout
