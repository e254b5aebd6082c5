"""Train the example agent shipped in ``examples/`` (PPO on Pendulum-v1).

Kept so that anyone can reproduce the shipped zip. Hyper-parameters follow the
RL Baselines3 Zoo's PPO Pendulum-v1 entry (without gSDE), 64x64 MlpPolicy.

    python scripts/train_example.py --timesteps 200000 -o examples/ppo-Pendulum-v1.zip
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timesteps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="examples/ppo-Pendulum-v1.zip")
    args = parser.parse_args()

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    env = make_vec_env("Pendulum-v1", n_envs=4, seed=args.seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=1024,
        gae_lambda=0.95,
        gamma=0.9,
        n_epochs=10,
        ent_coef=0.0,
        learning_rate=1e-3,
        clip_range=0.2,
        seed=args.seed,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps)
    mean, std = evaluate_policy(model, make_vec_env("Pendulum-v1", n_envs=1, seed=123), n_eval_episodes=10)
    print(f"trained {args.timesteps} steps in {time.perf_counter() - start:.0f} s; return {mean:.1f} ± {std:.1f}")
    model.save(args.output)
    print(f"saved {args.output} ({np.round(mean, 1)})")


if __name__ == "__main__":
    main()
