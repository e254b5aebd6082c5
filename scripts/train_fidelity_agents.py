"""Train competent agents (RL Zoo-like hyper-parameters) for the fidelity benchmark.

Not part of the test suite: competent agents take minutes each on 2 cores.
The fidelity benchmark (`scripts/bench_fidelity.py`) builds each with and
without edgekit's int8 conditioning and compares with the float policy.

    python scripts/train_fidelity_agents.py -o /tmp/fidelity-agents [--only dqn-cartpole]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

AGENTS: dict[str, dict[str, Any]] = {
    "dqn-cartpole": {"algo": "DQN", "env": "CartPole-v1", "steps": 50_000, "kwargs": {
        "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
        "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
        "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
        "policy_kwargs": {"net_arch": [256, 256]}}},
    "td3-pendulum": {"algo": "TD3", "env": "Pendulum-v1", "steps": 12_000, "kwargs": {
        "learning_starts": 1000, "policy_kwargs": {"net_arch": [400, 300]}}},
    "sac-pendulum": {"algo": "SAC", "env": "Pendulum-v1", "steps": 10_000, "kwargs": {
        "learning_rate": 1e-3, "learning_starts": 1000, "policy_kwargs": {"net_arch": [256, 256]}}},
    "ppo-cartpole": {"algo": "PPO", "env": "CartPole-v1", "steps": 60_000, "kwargs": {
        "n_steps": 256, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
        "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}},
    "a2c-acrobot": {"algo": "A2C", "env": "Acrobot-v1", "steps": 100_000, "kwargs": {"ent_coef": 0.0}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=Path("/tmp/fidelity-agents"))
    parser.add_argument("--only", nargs="*", choices=sorted(AGENTS))
    args = parser.parse_args()
    import stable_baselines3
    import torch
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    args.output.mkdir(parents=True, exist_ok=True)
    for name in args.only or AGENTS:
        spec = AGENTS[name]
        path = args.output / f"{name}.zip"
        if path.exists():
            print(f"{name}: exists")
            continue
        start = time.perf_counter()
        model = getattr(stable_baselines3, spec["algo"])("MlpPolicy", spec["env"], seed=0, device="cpu",
                                                         **spec["kwargs"])
        model.learn(total_timesteps=spec["steps"])
        mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=10)
        model.save(path)
        print(f"{name}: return {mean:.1f} ± {std:.1f} after {spec['steps']} steps "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
