"""Agents published by the RL Baselines3 Zoo (SB3 1.0, pickled under `gym`), deployed as they are.

Test data: ../shared/legacy-agents (MIT). No `gym` is installed: the restricted loader maps the
pickled `gym.spaces` onto gymnasium; the A2C agent was trained behind VecNormalize, whose statistics
rl-zoo3 saved beside the model and the build finds there.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import REPO

from edgekit.bundle import Manifest

LEGACY = REPO.parent / "shared" / "legacy-agents"
AGENTS = [
    ("a2c/Acrobot-v1_1/Acrobot-v1.zip", "Acrobot-v1", True),
    ("ppo/CartPole-v1_1/CartPole-v1.zip", "CartPole-v1", False),
    ("sac/MountainCarContinuous-v0_1/MountainCarContinuous-v0.zip", "MountainCarContinuous-v0", False),
]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not LEGACY.is_dir(), reason="../shared/legacy-agents absent")]


@pytest.mark.parametrize("relative,env_id,vecnormalize", AGENTS)
def test_published_agent_deploys_without_gym(relative, env_id, vecnormalize, tmp_path):
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.progress import Progress
    from edgekit.stages.rollouts import RolloutRecipe

    assert importlib.util.find_spec("gym") is None  # the point: no gym needed
    out = tmp_path / "bundle"
    result = build(BuildOptions(model=LEGACY / relative, env_id=env_id, output=out,
                                recipe=RolloutRecipe(calibration_steps=1000, held_out_steps=1000),
                                report=ReportOptions(episodes=2)), Progress(quiet=True))
    manifest = Manifest.read(out)
    assert manifest.source["sb3_version"].startswith("1.")
    assert (manifest.preprocess.normalize is not None) == vecnormalize
    report = json.loads((out / "report.json").read_text())
    assert report["closed_loop"]["normalized_score"] >= 0.95
    if vecnormalize:  # the fast single step folds VecNormalize (clamp + affine): same actions as the batch path
        import numpy as np

        import edgekit.runtime.step as step_module
        from edgekit.runtime import EdgePolicy

        with np.load(out / "calibration.npz") as data:
            obs = np.concatenate([data["held_out"][:300], data["held_out"][:50] * 40.0]).astype(np.float32)
        for limit in (step_module.SCALAR_LIMIT, 0):  # Python-scalar and numpy variants
            step_module.SCALAR_LIMIT, saved = limit, step_module.SCALAR_LIMIT
            try:
                policy = EdgePolicy.load(out, device="cpu")
            finally:
                step_module.SCALAR_LIMIT = saved
            for row in obs:
                assert np.array_equal(policy.predict(row), policy._predict_general(row))
            with pytest.raises(Exception, match="NaN or infinity"):
                policy.predict(np.full_like(obs[0], np.inf))
    metrics = result.validation.metrics
    if "discrete" in metrics:
        assert metrics["discrete"]["decisive_agreement"] >= 0.97
    else:
        assert metrics["continuous"]["mean_share_of_range"] <= 0.02


def test_vecnormalize_statistics_are_read_without_running_code():
    from edgekit.loading.source import resolve_source
    from edgekit.loading.vecnormalize import load_vecnormalize

    model = LEGACY / AGENTS[0][0]
    path = resolve_source(model).vecnormalize
    assert path == model.parent / "Acrobot-v1" / "vecnormalize.pkl"
    norm = load_vecnormalize(path, 6)
    assert norm is not None and norm.clip == 10.0 and len(norm.mean) == 6 and min(norm.std) > 0


def test_missing_vecnormalize_file_is_a_one_line_error(tmp_path):
    from conftest import run_cli

    proc = run_cli("build", str(LEGACY / AGENTS[0][0]), "--env", "Acrobot-v1", "-o", str(tmp_path / "b"),
                   "--vecnormalize", str(tmp_path / "none.pkl"))
    assert proc.returncode != 0 and "do not exist" in proc.stderr and "Traceback" not in proc.stderr




def test_zoo_run_folder_and_hub_file_names(tmp_path):
    import shutil

    from edgekit.errors import UsageError
    from edgekit.loading.source import resolve_source

    run_folder = LEGACY / "a2c" / "Acrobot-v1_1"
    source = resolve_source(run_folder)
    assert source.model == run_folder / "Acrobot-v1.zip" and source.layout == "rl-zoo3 run folder"
    assert source.env_id == "Acrobot-v1" and source.config == run_folder / "Acrobot-v1" / "config.yml"
    hub = tmp_path / "hub-snapshot"  # a Hugging Face sb3 repo keeps its files beside the zip
    hub.mkdir()
    shutil.copy(run_folder / "Acrobot-v1.zip", hub / "a2c-Acrobot-v1.zip")
    shutil.copy(run_folder / "Acrobot-v1" / "vecnormalize.pkl", hub / "vec_normalize.pkl")
    shutil.copy(run_folder / "Acrobot-v1" / "config.yml", hub / "config.yml")
    (hub / "train_eval_metrics.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: not a model
    source = resolve_source(hub)
    assert source.model == hub / "a2c-Acrobot-v1.zip" and source.layout == "hub snapshot"
    assert source.vecnormalize == hub / "vec_normalize.pkl" and source.env_id == "Acrobot-v1"
    shutil.copy(run_folder / "Acrobot-v1.zip", hub / "second.zip")
    with pytest.raises(UsageError, match="2 SB3 model zips"):
        resolve_source(hub)


@pytest.mark.parametrize("relative", [a[0] for a in AGENTS])
def test_zoo_configs_are_read_safely(relative):
    from edgekit.loading.source import resolve_source
    from edgekit.loading.zoo_config import check_zoo_config, read_zoo_config

    path = resolve_source(LEGACY / relative).config
    config = read_zoo_config(path)
    assert config["policy"] == "MlpPolicy" and "n_timesteps" in config
    check_zoo_config(config, path)


def test_zoo_config_with_code_or_wrappers_is_refused(tmp_path):
    from edgekit.errors import ModelFileError, UnsupportedModelError
    from edgekit.loading.zoo_config import check_zoo_config, read_zoo_config

    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.yml"
    hostile.write_text(f"!!python/object/apply:os.system\n- touch {marker}\n")
    with pytest.raises(ModelFileError, match="safely"):
        read_zoo_config(hostile)
    assert not marker.exists()
    wrapped = tmp_path / "wrapped.yml"
    wrapped.write_text("!!python/object/apply:collections.OrderedDict\n- - - env_wrapper\n"
                       "    - sb3_contrib.common.wrappers.TimeFeatureWrapper\n  - - policy\n    - MlpPolicy\n")
    config = read_zoo_config(wrapped)
    assert config["env_wrapper"] == "sb3_contrib.common.wrappers.TimeFeatureWrapper"
    with pytest.raises(UnsupportedModelError, match="env_wrapper"):
        check_zoo_config(config, wrapped)
