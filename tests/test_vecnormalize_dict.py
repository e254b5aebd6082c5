"""VecNormalize on a Dict observation: only the keys in ``norm_obs_keys`` are normalized (and clipped).

A MultiInputPolicy is trained behind VecNormalize(norm_obs_keys=["pos"]) on the tests' Dict env; the
statistics file SB3 saves is read without running code, folded per feature (the other keys pass
unchanged), and the bundle's actions on raw observations match SB3's predict on the observations
SB3's own VecNormalize normalizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from coverage_envs import env_id

from edgekit.bundle import Manifest
from edgekit.bundle.manifest import ObsNormalization
from edgekit.core.errors import BundleError

ENV = env_id("dict", "discrete")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("vecnorm-dict") / "ENV_1"
    (folder / "ENV").mkdir(parents=True)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(ENV)]), norm_obs_keys=["pos"], clip_obs=2.0)
    model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=32, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]})
    model.learn(256)
    model.save(folder / "ENV.zip")
    venv.save(str(folder / "ENV" / "vecnormalize.pkl"))  # as rl-zoo3 keeps it beside the model
    return folder, model, venv


def test_dict_statistics_cover_only_the_normalized_keys(trained):
    from edgekit.host.loading import load_agent
    from edgekit.host.loading.vecnormalize import load_vecnormalize

    folder, _model, venv = trained
    space = load_agent(folder / "ENV.zip").observation_space
    norm = load_vecnormalize(folder / "ENV" / "vecnormalize.pkl", space)
    # features in the space's key order (bins 2+3, cell 3, pos 2, signs 2): only pos is normalized
    assert norm.active == (False,) * 8 + (True, True) + (False, False) and norm.clip == 2.0
    np.testing.assert_allclose(norm.mean[8:10], venv.obs_rms["pos"].mean)
    np.testing.assert_allclose(norm.std[8:10], np.sqrt(venv.obs_rms["pos"].var + venv.epsilon))
    low, high = norm.bounds()
    assert np.isinf(low[:8]).all() and np.isfinite(low[8:10]).all() and np.isinf(high[10:]).all()


@pytest.mark.slow
def test_bundle_applies_vecnormalize_to_the_normalized_keys_only(trained, tmp_path):
    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.runtime import EdgePolicy
    from edgekit.stages.rollouts import RolloutRecipe

    folder, model, venv = trained
    out = tmp_path / "bundle"
    build(BuildOptions(model=folder / "ENV.zip", env_id=ENV, output=out,
                       recipe=RolloutRecipe(calibration_steps=400, held_out_steps=400),
                       report=ReportOptions(episodes=2)), Progress(quiet=True))
    manifest = Manifest.read(out)
    assert manifest.preprocess.normalize is not None and manifest.preprocess.normalize.active is not None
    policy = EdgePolicy.load(out, device="cpu")
    with np.load(out / "calibration.npz") as data:
        raw = policy.observations_of(data["held_out"])
    raw["pos"] = raw["pos"] * 3.0  # beyond clip_obs for some: the clip must act on pos alone
    seen = venv.normalize_obs({k: v.copy() for k, v in raw.items()})  # SB3's own normalization
    assert np.array_equal(seen["cell"], raw["cell"]) and not np.allclose(seen["pos"], raw["pos"])
    expected = model.predict(seen, deterministic=True)[0]
    actual = policy.predict(raw)
    assert np.mean(actual == expected) >= 0.9
    rows = [{k: v[i] for k, v in raw.items()} for i in range(50)]
    assert all(np.array_equal(policy.predict(row), want) for row, want in zip(rows, actual[:50]))


@pytest.mark.parametrize("active", [[True], "yes", [1] * 3, [True, False, "x"]])
def test_hostile_active_mask_is_refused(active):
    data = {"mean": [0.0, 1.0, 0.0], "std": [1.0, 2.0, 1.0], "clip": 5.0, "active": active}
    with pytest.raises(BundleError):
        ObsNormalization.from_dict(data, 3)


def test_inactive_features_must_pass_unchanged():
    data = {"mean": [0.5, 1.0], "std": [1.0, 2.0], "clip": 5.0, "active": [False, True]}
    with pytest.raises(BundleError, match="mean 0 and std 1"):
        ObsNormalization.from_dict(data, 2)
    data["mean"][0] = 0.0
    norm = ObsNormalization.from_dict(data, 2)
    np.testing.assert_allclose(norm.apply(np.array([[100.0, 21.0]])), [[100.0, 5.0]])
