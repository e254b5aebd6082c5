"""Fidelity benchmark: how close the int8 policy stays to the float one, naive conversion vs edgekit's defaults.

Agents: the shipped example (PPO Pendulum), the agents of scripts/train_fidelity_agents.py (trained
into --agents when missing, cached otherwise: SAC, TD3 Pendulum; DQN, PPO CartPole; A2C Acrobot;
PPO Acrobot behind VecNormalize) and the three RL Zoo agents in tests/data/rl-zoo-agents. Each is built
twice through the real pipeline (ONNX -> onnx2tf -> int8 TFLite, validated through the runtime):

* naive: per-tensor int8 calibrated on the same rollouts, no conditioning (VecNormalize still
  applied on the host, as any working deployment must);
* edgekit: the defaults of ``edgekit build``.

Reported on the build's 2,000 held-out observations (fresh rollouts, another seed):

* continuous actions: mean / p99 action error as a share of the action range (targets <= 0.5 %, <= 2 %);
* discrete actions: argmax agreement on decisive states (target >= 99.5 %) and overall;
* closed loop: normalized score (R_int8 - R_random) / (R_float - R_random) over --episodes seeded
  episodes (target >= 0.99), from the build's own report.

    python scripts/bench_fidelity.py [--agents /tmp/fidelity-agents] [--episodes 10] [--only NAME ...]
                                     [--json out.json] [--no-train]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEGACY = REPO / "tests" / "data" / "rl-zoo-agents"
sys.path.insert(0, str(REPO / "scripts"))


@dataclass(frozen=True)
class Agent:
    name: str
    env_id: str
    path: Path
    trained_as: str = ""  # a name in train_fidelity_agents.AGENTS: trained when missing


def agents(agents_dir: Path) -> list[Agent]:
    from train_fidelity_agents import AGENTS

    out = [Agent("ppo-pendulum (example)", "Pendulum-v1", REPO / "examples" / "ppo-Pendulum-v1.zip")]
    out += [Agent(name, spec["env"], agents_dir / f"{name}.zip", name) for name, spec in AGENTS.items()]
    out += [
        Agent("zoo a2c-acrobot (VecNormalize)", "Acrobot-v1", LEGACY / "a2c" / "Acrobot-v1_1" / "Acrobot-v1.zip"),
        Agent("zoo ppo-cartpole", "CartPole-v1", LEGACY / "ppo" / "CartPole-v1_1" / "CartPole-v1.zip"),
        Agent("zoo sac-mountaincarcontinuous", "MountainCarContinuous-v0",
              LEGACY / "sac" / "MountainCarContinuous-v0_1" / "MountainCarContinuous-v0.zip"),
    ]
    return out


VARIANTS: dict[str, dict[str, Any]] = {
    "naive": dict(input_scaling=False, output_range=False, finetune=False, input_split=0, widen=False),
    "edgekit": dict(),
}


def build_variant(agent: Agent, variant: str, episodes: int, work: Path) -> dict[str, Any]:
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.progress import Progress
    from edgekit.stages.condition import ConditioningOptions

    start = time.perf_counter()
    result = build(BuildOptions(model=agent.path, env_id=agent.env_id, output=work / variant, force=True,
                                conditioning=ConditioningOptions(**VARIANTS[variant]),
                                report=ReportOptions(episodes=episodes)), Progress(quiet=True))
    wall = time.perf_counter() - start
    metrics = result.validation.metrics
    loop = result.report.report.get("closed_loop") or {}
    check = json.loads((work / variant / "report.json").read_text())["build"]["edgetpu_check"]
    entry: dict[str, Any] = {
        "build_s": round(wall - result.timings.get("report (closed loop)", 0.0), 1),
        "score": loop.get("normalized_score") if isinstance(loop, dict) else None,
        "float_return": (loop.get("float") or {}).get("mean") if isinstance(loop, dict) else None,
        "int8_return": (loop.get("int8") or {}).get("mean") if isinstance(loop, dict) else None,
        "ops": list(result.manifest.models["cpu"].file and _ops(work / variant)),
        "edgetpu_share": check.get("tpu_share"),
        "conditioning": dict(result.manifest.conditioning),
    }
    if "continuous" in metrics:
        entry["mean_err"] = metrics["continuous"]["mean_share_of_range"]
        entry["p99_err"] = metrics["continuous"]["p99_share_of_range"]
    else:
        entry["agreement"] = metrics["discrete"]["agreement"]
        entry["decisive_agreement"] = metrics["discrete"]["decisive_agreement"]
    return entry


def _ops(bundle: Path) -> list[str]:
    from edgekit.tflite_inspect import inspect_int8_model

    return list(inspect_int8_model(bundle / "model_int8.tflite").op_names)


def fidelity(entry: dict[str, Any]) -> str:
    if "mean_err" in entry:
        return f"{100 * entry['mean_err']:.2f} % / {100 * entry['p99_err']:.2f} %"
    decisive = entry["decisive_agreement"]
    return f"{100 * decisive:.2f} % ({100 * entry['agreement']:.1f} %)" if decisive is not None else "-"


def meets(entry: dict[str, Any]) -> bool:
    score_ok = entry["score"] is None or entry["score"] >= 0.99
    if "mean_err" in entry:
        return entry["mean_err"] <= 0.005 and entry["p99_err"] <= 0.02 and score_ok
    return (entry["decisive_agreement"] or 0.0) >= 0.995 and score_ok


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| agent | naive int8: error mean / p99, or decisive agreement (overall) | score | "
             "edgekit: error or agreement | score | targets | build s | edgekit int8 model |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        n, e = row["variants"]["naive"], row["variants"]["edgekit"]
        ops = e["ops"]
        model = f"{len(ops)} ops ({', '.join(sorted(set(ops)))}), Edge TPU {100 * (e['edgetpu_share'] or 0):.0f} %"
        lines.append(f"| {row['agent']} | {fidelity(n)} | {_score(n)} | {fidelity(e)} | {_score(e)} | "
                     f"{'met' if meets(e) else 'MISSED'} | {e['build_s']:.0f} | {model} |")
    return "\n".join(lines)


def _score(entry: dict[str, Any]) -> str:
    return f"{entry['score']:.3f}" if isinstance(entry["score"], (int, float)) else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=Path, default=Path("/tmp/fidelity-agents"))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", nargs="*", help="agent names (substring match)")
    parser.add_argument("--no-train", action="store_true", help="skip agents that are not trained yet")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    from train_fidelity_agents import AGENTS, train

    rows = []
    for agent in agents(args.agents):
        if args.only and not any(key in agent.name for key in args.only):
            continue
        if not agent.path.exists():
            if agent.trained_as and not args.no_train:
                args.agents.mkdir(parents=True, exist_ok=True)
                train(agent.trained_as, AGENTS[agent.trained_as], args.agents)
            else:
                print(f"{agent.name}: {agent.path} missing, skipped", flush=True)
                continue
        row: dict[str, Any] = {"agent": agent.name, "env": agent.env_id, "variants": {}}
        with tempfile.TemporaryDirectory() as tmp:
            for variant in VARIANTS:
                entry = build_variant(agent, variant, args.episodes, Path(tmp))
                row["variants"][variant] = entry
                print(f"{agent.name:34s} {variant:8s} {fidelity(entry):26s} score {_score(entry)}  "
                      f"build {entry['build_s']:.0f} s", flush=True)
        rows.append(row)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
