"""Make the test data of tests/data/sb3-versions/: tiny agents saved by older stable-baselines3 releases.

edgekit loads zips that other SB3 releases wrote (older layouts, gym instead of
gymnasium, numpy 1.x pickles). This script runs INSIDE a throwaway virtualenv
holding one such release (never the project's venv) and writes, for that
release, into ``OUT/<sb3 version>/``:

* ``ppo-Pendulum-v1.zip``  PPO, Box actions, ``net_arch=[32, 32]`` (shared layers
  in SB3 < 1.8, separate pi/vf nets from 1.8 on: what that release made of it)
* ``a2c-CartPole-v1.zip``  A2C, Discrete actions: one shared layer [32] then pi [16]
  and vf [8] in SB3 < 1.8 (``[32, dict(pi=[16], vf=[8])]``), the same widths as
  separate nets (``dict(pi=[32, 16], vf=[32, 8])``) from 1.8 on
* ``dqn-CartPole-v1.zip``  DQN, Discrete actions, ``net_arch=[32, 32]``
* ``sac-Pendulum-v1.zip``  SAC, Box actions, ``net_arch=[16, 16]`` (actor, two critics, their target
  copies and optimizers: the largest zip)
* ``ppo/Pendulum-v1_1/``   an rl-zoo3 run folder: PPO with ReLU, pi [32, 32] and
  vf [16], trained behind ``VecNormalize``, ``Pendulum-v1.zip`` plus
  ``Pendulum-v1/config.yml`` and ``Pendulum-v1/vecnormalize.pkl`` as rl-zoo3 saves them
* ``agents.json``          the list above, as the tests read it
* ``reference.npz``        for each agent, 64 rollout observations (raw, before
  VecNormalize) and the actions this release's ``model.predict(obs,
  deterministic=True)`` gave for them: the ground truth the tests compare with
* ``versions.json``        the exact versions that made the files

Virtualenv recipes (Python 3.11; torch pinned to the CPU wheel on disk, never an
unpinned torch; numpy < 2 as in those releases' time)::

    # SB3 2.x (gymnasium)
    python3 -m venv /work/venv-sb3-2.0
    /work/venv-sb3-2.0/bin/pip install "pip<25"
    /work/venv-sb3-2.0/bin/pip install "stable-baselines3==2.0.0" "gymnasium==0.28.1" "torch==2.13.0" "numpy<2"
    #   2.3.2 with gymnasium==0.29.1, 2.4.1 with gymnasium==1.0.0: the same line

    # SB3 1.x (gym 0.21: an sdist whose metadata pip >= 24.1 rejects; it builds with
    # pip 23.2.1 and setuptools 65.5 without build isolation)
    python3 -m venv /work/venv-sb3-1.8
    /work/venv-sb3-1.8/bin/pip install "pip==23.2.1" "setuptools==65.5.0" "wheel==0.38.4"
    /work/venv-sb3-1.8/bin/pip install --no-build-isolation "gym==0.21.0" "numpy<2" "importlib-metadata~=4.13"
    /work/venv-sb3-1.8/bin/pip install "stable-baselines3==1.8.0" "gym==0.21.0" "torch==2.13.0" "numpy<2"
    #   1.6.2 and 1.5.0: the same lines

    /work/venv-sb3-2.0/bin/python scripts/make_sb3_version_agents.py -o tests/data/sb3-versions

A few hundred training steps each, seeded: the agents are barely trained (the
tests compare the deployed policy with the float one, not returns).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_STEPS = 64


def _gym() -> Any:
    """gymnasium for SB3 >= 2.0, gym before."""
    try:
        import gymnasium

        return gymnasium
    except ImportError:
        import gym

        return gym


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def _rollout_observations(env_id: str, seed: int) -> np.ndarray:
    """Observations of random-action rollouts, as a policy sees states (old and new gym step APIs)."""
    gym = _gym()
    env = gym.make(env_id)
    env.action_space.seed(seed)
    rows = []
    reset = env.reset(seed=seed) if gym.__name__ == "gymnasium" else (env.seed(seed), env.reset())[1]
    obs = reset[0] if isinstance(reset, tuple) else reset
    while len(rows) < REFERENCE_STEPS:
        rows.append(np.asarray(obs, dtype=np.float32))
        out = env.step(env.action_space.sample())
        obs, done = out[0], (out[2] or out[3]) if len(out) == 5 else out[2]
        if done:
            obs = env.reset()
            obs = obs[0] if isinstance(obs, tuple) else obs
    env.close()
    return np.stack(rows)


def _zoo_config(params: dict[str, Any]) -> str:
    """config.yml in rl-zoo3's format: an OrderedDict of the hyper-parameters, sorted by key."""
    lines = ["!!python/object/apply:collections.OrderedDict"]
    for i, key in enumerate(sorted(params)):
        value = params[key]
        text = str(value).lower() if isinstance(value, bool) else (repr(value) if isinstance(value, str) else value)
        lines += [f"{'-' if i == 0 else ' '} - - {key}", f"    - {text}"]
    return "\n".join(lines) + "\n"


def _agents(legacy: bool) -> list[dict[str, Any]]:
    """What to train. ``legacy``: SB3 < 1.8, where a plain ``net_arch`` list meant layers shared by the
    policy and value networks and separate ones were written ``[dict(pi=..., vf=...)]``."""
    return [
        {"name": "ppo-Pendulum-v1", "file": "ppo-Pendulum-v1.zip", "algo": "PPO", "env": "Pendulum-v1",
         "steps": 256, "kwargs": {"n_steps": 128, "batch_size": 64}, "net_arch": [32, 32]},
        {"name": "a2c-CartPole-v1", "file": "a2c-CartPole-v1.zip", "algo": "A2C", "env": "CartPole-v1",
         "steps": 200, "kwargs": {"n_steps": 8},  # one shared layer, then pi [16] and vf [8]
         "net_arch": [32, {"pi": [16], "vf": [8]}] if legacy else {"pi": [32, 16], "vf": [32, 8]}},
        {"name": "dqn-CartPole-v1", "file": "dqn-CartPole-v1.zip", "algo": "DQN", "env": "CartPole-v1",
         "steps": 300, "kwargs": {"learning_starts": 100}, "net_arch": [32, 32]},
        {"name": "sac-Pendulum-v1", "file": "sac-Pendulum-v1.zip", "algo": "SAC", "env": "Pendulum-v1",
         "steps": 300, "kwargs": {"learning_starts": 100}, "net_arch": [16, 16]},
        # rl-zoo3's run folder of an agent trained with `normalize: true`
        {"name": "ppo-Pendulum-v1-vecnormalize", "file": "ppo/Pendulum-v1_1/Pendulum-v1.zip", "algo": "PPO",
         "env": "Pendulum-v1", "steps": 512, "kwargs": {"n_steps": 128, "batch_size": 64},
         "net_arch": [{"pi": [32, 32], "vf": [16]}] if legacy else {"pi": [32, 32], "vf": [16]},
         "activation_fn": "ReLU", "vecnormalize": "ppo/Pendulum-v1_1/Pendulum-v1/vecnormalize.pkl"},
    ]


def make_agents(out: Path) -> Path:
    import stable_baselines3
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    version = stable_baselines3.__version__
    target = out / version
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    agents = _agents(legacy=_version_tuple(version) < (1, 8))
    reference: dict[str, np.ndarray] = {}
    for agent in agents:
        path = target / agent["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        policy_kwargs: dict[str, Any] = {"net_arch": agent["net_arch"]}
        if "activation_fn" in agent:
            policy_kwargs["activation_fn"] = getattr(torch.nn, agent["activation_fn"])
        env: Any = agent["env"]
        if "vecnormalize" in agent:
            env = VecNormalize(make_vec_env(agent["env"], n_envs=1, seed=0), gamma=0.99)
        model = getattr(stable_baselines3, agent["algo"])("MlpPolicy", env, seed=0, device="cpu",
                                                          policy_kwargs=policy_kwargs, **agent["kwargs"])
        model.learn(total_timesteps=agent["steps"])
        model.save(path)
        obs = _rollout_observations(agent["env"], seed=7)
        seen = obs
        if "vecnormalize" in agent:  # saved as rl-zoo3 does, with the config.yml that marks its run folder
            (target / agent["vecnormalize"]).parent.mkdir(parents=True, exist_ok=True)
            env.save(str(target / agent["vecnormalize"]))
            (target / agent["vecnormalize"]).with_name("config.yml").write_text(_zoo_config({
                "n_timesteps": float(agent["steps"]), "policy": "MlpPolicy", "normalize": True, **agent["kwargs"],
                "policy_kwargs": f"dict(net_arch={agent['net_arch']}, activation_fn=nn.{agent['activation_fn']})"}))
            env.training = False
            seen = env.normalize_obs(obs)
        reference[f"{agent['name']}/obs"] = obs
        reference[f"{agent['name']}/actions"] = np.asarray(model.predict(seen, deterministic=True)[0])
    np.savez_compressed(target / "reference.npz", **reference)
    index = [{k: agent[k] for k in ("name", "file", "algo", "env", "steps", "net_arch", "activation_fn",
                                     "vecnormalize") if k in agent} for agent in agents]
    (target / "agents.json").write_text(json.dumps(index, indent=1) + "\n")
    (target / "versions.json").write_text(json.dumps(_versions(), indent=2, sort_keys=True) + "\n")
    return target


def _versions() -> dict[str, str]:
    import cloudpickle
    import stable_baselines3
    import torch

    gym = _gym()
    return {"stable-baselines3": stable_baselines3.__version__, gym.__name__: gym.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "cloudpickle": cloudpickle.__version__,
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=Path("tests/data/sb3-versions"))
    args = parser.parse_args()
    target = make_agents(args.output)
    sizes = {p.relative_to(target).as_posix(): p.stat().st_size for p in sorted(target.rglob("*")) if p.is_file()}
    print(json.dumps({"written": str(target), "versions": _versions(), "bytes": sizes}, indent=2), file=sys.stdout)


if __name__ == "__main__":
    main()
