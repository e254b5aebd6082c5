"""The fidelity method's tuning and held-out splits of the RL Zoo agents (docs/fidelity.md).

The int8 conditioning may be tuned on the TUNING split; the HELD_OUT split judges it and is not looked
at while tuning. The split is by environment family, so that no held-out agent shares an environment
with a tuning agent: tuning = classic control + Hopper, HalfCheetah, Walker2d (and the CartPole and
Pendulum agents of scripts/train_fidelity_agents.py --tuning); held-out = Box2D + Ant, Humanoid,
Swimmer + the goal-conditioned (HER) agents.

Each entry: the run folder under the zoo root (ALGO/ENV_1) and the Gymnasium id to build it with
(gymnasium renamed MuJoCo -v3 to -v4, LunarLander -v2 to -v3; the robotics envs need their module).
"""

from __future__ import annotations

from dataclasses import dataclass

MUJOCO_TUNING = ("Hopper", "HalfCheetah", "Walker2d")
MUJOCO_HELD_OUT = ("Ant", "Humanoid", "Swimmer")


@dataclass(frozen=True)
class ZooAgent:
    folder: str  # ALGO/ENV_1 under the zoo root
    env_id: str  # what to pass as --env
    env_module: str | None = None  # what to pass as --env-module

    @property
    def name(self) -> str:
        return "zoo " + self.folder.replace("_1", "")


def _mujoco(algo: str, envs: tuple[str, ...]) -> list[ZooAgent]:
    return [ZooAgent(f"{algo}/{env}-v3_1", f"{env}-v4") for env in envs]


TUNING: tuple[ZooAgent, ...] = (
    # classic control (9)
    ZooAgent("a2c/MountainCar-v0_1", "MountainCar-v0"),
    ZooAgent("ars/Acrobot-v1_1", "Acrobot-v1"),
    ZooAgent("ars/MountainCar-v0_1", "MountainCar-v0"),
    ZooAgent("ars/MountainCarContinuous-v0_1", "MountainCarContinuous-v0"),
    ZooAgent("qrdqn/MountainCar-v0_1", "MountainCar-v0"),
    ZooAgent("tqc/MountainCarContinuous-v0_1", "MountainCarContinuous-v0"),
    ZooAgent("trpo/Acrobot-v1_1", "Acrobot-v1"),
    ZooAgent("trpo/MountainCar-v0_1", "MountainCar-v0"),
    ZooAgent("trpo/MountainCarContinuous-v0_1", "MountainCarContinuous-v0"),
    # MuJoCo Hopper, HalfCheetah, Walker2d (18)
    *[agent for algo in ("a2c", "ars", "ppo", "sac", "tqc", "trpo") for agent in _mujoco(algo, MUJOCO_TUNING)],
)

HELD_OUT: tuple[ZooAgent, ...] = (
    # Box2D (15)
    ZooAgent("a2c/BipedalWalker-v3_1", "BipedalWalker-v3"),
    ZooAgent("a2c/BipedalWalkerHardcore-v3_1", "BipedalWalkerHardcore-v3"),
    ZooAgent("a2c/LunarLander-v2_1", "LunarLander-v3"),
    ZooAgent("a2c/LunarLanderContinuous-v2_1", "LunarLanderContinuous-v3"),
    ZooAgent("ars/LunarLanderContinuous-v2_1", "LunarLanderContinuous-v3"),
    ZooAgent("ddpg/LunarLanderContinuous-v2_1", "LunarLanderContinuous-v3"),
    ZooAgent("dqn/LunarLander-v2_1", "LunarLander-v3"),
    ZooAgent("ppo/BipedalWalker-v3_1", "BipedalWalker-v3"),
    ZooAgent("ppo/BipedalWalkerHardcore-v3_1", "BipedalWalkerHardcore-v3"),
    ZooAgent("ppo/LunarLander-v2_1", "LunarLander-v3"),
    ZooAgent("ppo/LunarLanderContinuous-v2_1", "LunarLanderContinuous-v3"),
    ZooAgent("qrdqn/LunarLander-v2_1", "LunarLander-v3"),
    ZooAgent("trpo/BipedalWalker-v3_1", "BipedalWalker-v3"),
    ZooAgent("trpo/LunarLander-v2_1", "LunarLander-v3"),
    ZooAgent("trpo/LunarLanderContinuous-v2_1", "LunarLanderContinuous-v3"),
    # MuJoCo Ant, Humanoid, Swimmer (11)
    *_mujoco("a2c", MUJOCO_HELD_OUT),
    *_mujoco("ars", ("Ant", "Swimmer")),
    *_mujoco("ppo", ("Ant", "Swimmer")),
    *_mujoco("sac", ("Swimmer",)),
    *_mujoco("tqc", ("Swimmer",)),
    *_mujoco("trpo", ("Ant", "Swimmer")),
    # goal-conditioned, Dict observations (4)
    ZooAgent("her/FetchReach-v1_1", "FetchReach-v4", "gymnasium_robotics"),
    ZooAgent("her/PandaReach-v1_1", "PandaReach-v3", "panda_gym"),
    ZooAgent("tqc/FetchReach-v1_1", "FetchReach-v4", "gymnasium_robotics"),
    ZooAgent("tqc/PandaReach-v1_1", "PandaReach-v3", "panda_gym"),
)

SPLITS = {"tuning": TUNING, "held-out": HELD_OUT}
