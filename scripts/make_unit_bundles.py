"""Regenerate the small int8 bundles the unit test lane runs on (``tests/data/unit-bundles/``).

The unit lane (``pytest tests/unit``) has numpy and a TFLite interpreter only, so it cannot train or build:
it runs ``EdgePolicy`` on bundles committed to the repository. This script makes them from tiny agents
trained here (a few hundred steps, one 8-unit hidden layer): a PPO Pendulum-v1 agent (Box actions,
clipped) and a PPO CartPole-v1 agent (Discrete actions,
argmax of the logits). Each is a complete bundle as
``edgekit build`` writes it (manifest, int8 model, ONNX, calibration, verify sample, report), about
50 KB each (most of it the report).
``tests/test_unit_bundles.py`` regenerates them in the full lane and checks that the manifests' schema still
matches the committed ones, so a format change shows up as a failing test that names this script.

    python scripts/make_unit_bundles.py                # rewrites tests/data/unit-bundles/
    python scripts/make_unit_bundles.py -o /tmp/ub     # elsewhere (the full lane's test does this)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "tests" / "data" / "unit-bundles"


@dataclass(frozen=True)
class UnitAgent:
    """One tiny agent: its algorithm, env, training steps and SB3 kwargs."""

    name: str
    algo: str
    env_id: str
    steps: int
    kwargs: dict[str, Any]


AGENTS = (
    UnitAgent("ppo-pendulum", "PPO", "Pendulum-v1", 1024,
              {"n_steps": 256, "batch_size": 64, "n_epochs": 4, "policy_kwargs": {"net_arch": [8]}}),
    UnitAgent("ppo-cartpole", "PPO", "CartPole-v1", 512,
              {"n_steps": 256, "batch_size": 64, "n_epochs": 4, "policy_kwargs": {"net_arch": [8]}}),
)
# Enough rows for int8 ranges that cover the policy's states; few enough that the bundle stays a few KB.
CALIBRATION_STEPS, HELD_OUT_STEPS, REPORT_EPISODES = 200, 100, 1


def _train(agent: UnitAgent, path: Path) -> Path:
    import torch

    from edgekit.host.algorithms import ALGORITHMS

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cls = ALGORITHMS[agent.algo].load_class()
    model = cls("MlpPolicy", agent.env_id, seed=0, device="cpu", **agent.kwargs)
    model.learn(total_timesteps=agent.steps)
    model.save(path)
    return path


def build_unit_bundles(output: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Train and build each agent (all, or ``names``) into ``output/NAME``; returns the bundle paths."""
    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.stages.rollouts import RolloutRecipe

    output.mkdir(parents=True, exist_ok=True)
    bundles = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-unit-bundles-") as tmp:
        for agent in AGENTS:
            if names is not None and agent.name not in names:
                continue
            model = _train(agent, Path(tmp) / f"{agent.name}.zip")
            target = output / agent.name
            if target.exists():
                shutil.rmtree(target)
            options = BuildOptions(
                model=model, env_id=agent.env_id, output=target,
                recipe=RolloutRecipe(calibration_steps=CALIBRATION_STEPS, held_out_steps=HELD_OUT_STEPS, seed=1),
                report=ReportOptions(episodes=REPORT_EPISODES),
            )
            build(options, Progress(quiet=True))
            bundles[agent.name] = target
    return bundles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    for name, path in build_unit_bundles(args.output).items():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"{name}: {path} ({size / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
