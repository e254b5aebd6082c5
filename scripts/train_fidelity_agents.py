"""Train competent agents (RL Zoo-like hyper-parameters) for the fidelity benchmark.

Not part of the test suite: competent agents take minutes each on 2 cores.
The fidelity benchmark (`scripts/bench_fidelity.py`) builds each with and
without edgekit's int8 conditioning and compares with the float policy.

    python scripts/train_fidelity_agents.py -o /tmp/fidelity-agents [--only dqn-cartpole] [--tuning]

``AGENTS`` are the benchmark agents; ``TUNING_AGENTS`` (``--tuning``) are trained only for the fidelity
method's tuning split (docs/fidelity.md): CartPole and Pendulum agents of the kinds whose published
versions missed the targets (A2C, QR-DQN CartPole; TQC, TRPO Pendulum), with the RL Zoo's recipes
(shortened where the agent is competent earlier).

Agents are cached: an existing zip is kept. Each run evaluates the policy every
``eval_every`` steps on 10 deterministic episodes and keeps the best checkpoint,
because off-policy learners on CartPole (DQN above all) collapse and recover
repeatedly: the zoo's DQN recipe ends, with seed 0, at a return of ~19 after
having reached 500 earlier in the run. An agent that is not competent at the
end (``min_return``) is reported as such, not silently saved as if it were.

Agents trained behind VecNormalize are saved in the rl-zoo3 layout
(``NAME.zip`` + ``NAME/vecnormalize.pkl``), where ``edgekit build`` finds it.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

AGENTS: dict[str, dict[str, Any]] = {
    "dqn-cartpole": {"algo": "DQN", "env": "CartPole-v1", "steps": 60_000, "min_return": 475,
                     "eval_every": 2_500, "kwargs": {
                         "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
                         "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
                         "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
                         "policy_kwargs": {"net_arch": [256, 256]}}},
    "td3-pendulum": {"algo": "TD3", "env": "Pendulum-v1", "steps": 12_000, "min_return": -250,
                     "eval_every": 3_000, "kwargs": {
                         "learning_starts": 1000, "policy_kwargs": {"net_arch": [400, 300]}}},
    "sac-pendulum": {"algo": "SAC", "env": "Pendulum-v1", "steps": 10_000, "min_return": -250,
                     "eval_every": 2_500, "kwargs": {
                         "learning_rate": 1e-3, "learning_starts": 1000, "policy_kwargs": {"net_arch": [256, 256]}}},
    "ppo-cartpole": {"algo": "PPO", "env": "CartPole-v1", "steps": 60_000, "min_return": 475,
                     "eval_every": 10_000, "kwargs": {
                         "n_steps": 256, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
                         "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}},
    "a2c-acrobot": {"algo": "A2C", "env": "Acrobot-v1", "steps": 100_000, "min_return": -100,
                    "eval_every": 20_000, "kwargs": {"ent_coef": 0.0}},
    # rl-zoo3's PPO Acrobot recipe (normalize: true, 16 envs, n_steps 256), shortened: PPO is competent
    # on Acrobot well before the zoo's 1e6 steps.
    "ppo-acrobot-vecnormalize": {"algo": "PPO", "env": "Acrobot-v1", "steps": 200_000, "min_return": -100,
                                 "eval_every": 40_000, "n_envs": 8, "vecnormalize": True, "kwargs": {
                                     "n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4,
                                     "ent_coef": 0.0}},
}

# The tuning split's own agents (docs/fidelity.md): never used to judge the method (that is the held-out split).
TUNING_AGENTS: dict[str, dict[str, Any]] = {
    "a2c-cartpole": {"algo": "A2C", "env": "CartPole-v1", "steps": 200_000, "min_return": 475,
                     "eval_every": 25_000, "n_envs": 8, "kwargs": {"ent_coef": 0.0}},
    "qrdqn-cartpole": {"algo": "QRDQN", "env": "CartPole-v1", "steps": 50_000, "min_return": 475,
                       "eval_every": 2_500, "kwargs": {
                           "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000,
                           "learning_starts": 1000, "gamma": 0.99, "target_update_interval": 10, "train_freq": 256,
                           "gradient_steps": 128, "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
                           "policy_kwargs": {"net_arch": [256, 256], "n_quantiles": 10}}},
    "tqc-pendulum": {"algo": "TQC", "env": "Pendulum-v1", "steps": 12_000, "min_return": -250,
                     "eval_every": 3_000, "kwargs": {"learning_rate": 1e-3, "learning_starts": 1000}},
    "trpo-pendulum": {"algo": "TRPO", "env": "Pendulum-v1", "steps": 100_000, "min_return": -250,
                      "eval_every": 20_000, "n_envs": 2, "kwargs": {
                          "gamma": 0.9, "n_steps": 1024, "gae_lambda": 0.95, "n_critic_updates": 20,
                          "learning_rate": 1e-3, "use_sde": True, "sde_sample_freq": 4}},
}


def algorithm_class(name: str) -> Any:
    """SB3's class, or sb3-contrib's (QRDQN, TQC, TRPO)."""
    import stable_baselines3

    if hasattr(stable_baselines3, name):
        return getattr(stable_baselines3, name)
    import sb3_contrib

    return getattr(sb3_contrib, name)


def train(name: str, spec: dict[str, Any], output: Path) -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    start = time.perf_counter()
    env = make_vec_env(spec["env"], n_envs=spec.get("n_envs", 1), seed=0)
    eval_env = make_vec_env(spec["env"], n_envs=1, seed=12345)
    if spec.get("vecnormalize"):
        env = VecNormalize(env, norm_obs=True, norm_reward=True)
        eval_env = VecNormalize(eval_env, norm_obs=True, norm_reward=False, training=False)
    model = algorithm_class(spec["algo"])("MlpPolicy", env, seed=0, device="cpu", **spec["kwargs"])
    keeper = _best_keeper(name, spec, env, eval_env)
    model.learn(total_timesteps=spec["steps"], callback=keeper)
    keeper.evaluate()
    best = keeper.best
    mean, state, stats = best
    model.policy.load_state_dict(state)
    model.save(output / f"{name}.zip")
    if stats is not None:
        env.obs_rms = stats
        (output / name).mkdir(exist_ok=True)
        env.save(str(output / name / "vecnormalize.pkl"))
    verdict = "competent" if mean >= spec["min_return"] else f"NOT competent (< {spec['min_return']})"
    print(f"{name}: best return {mean:.1f} ({verdict}), {spec['steps']} steps, "
          f"{time.perf_counter() - start:.0f} s", flush=True)


def _best_keeper(name: str, spec: dict[str, Any], env: Any, eval_env: Any) -> Any:
    """A callback that evaluates every ``eval_every`` steps (one learn() call, so the exploration and
    learning-rate schedules run as in one plain run) and keeps the best policy and its statistics."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class Keeper(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.best: tuple[float, Any, Any] = (-float("inf"), None, None)
            self.last = 0

        def _on_step(self) -> bool:
            if self.num_timesteps - self.last >= spec["eval_every"]:
                self.evaluate()
            return True

        def evaluate(self) -> None:
            self.last = self.model.num_timesteps
            if spec.get("vecnormalize"):
                eval_env.obs_rms = copy.deepcopy(env.obs_rms)
            mean, std = evaluate_policy(self.model, eval_env, n_eval_episodes=10, deterministic=True)
            print(f"  {name} {self.last:>7d} steps: return {mean:.1f} ± {std:.1f}", flush=True)
            if mean > self.best[0]:
                stats = copy.deepcopy(env.obs_rms) if spec.get("vecnormalize") else None
                self.best = (mean, copy.deepcopy(self.model.policy.state_dict()), stats)

    return Keeper()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=Path("/tmp/fidelity-agents"))
    parser.add_argument("--only", nargs="*", choices=sorted({**AGENTS, **TUNING_AGENTS}))
    parser.add_argument("--tuning", action="store_true", help="train the tuning split's agents instead")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    args.output.mkdir(parents=True, exist_ok=True)
    table = {**AGENTS, **TUNING_AGENTS}
    for name in args.only or (TUNING_AGENTS if args.tuning else AGENTS):
        if (args.output / f"{name}.zip").exists():
            print(f"{name}: exists")
            continue
        train(name, table[name], args.output)


if __name__ == "__main__":
    main()
