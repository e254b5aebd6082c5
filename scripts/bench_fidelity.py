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

The RL Zoo splits of docs/fidelity.md (``scripts/fidelity_split.py``): ``--split tuning`` (the tuning
agents of train_fidelity_agents.py --tuning and the zoo's tuning split) or ``--split held-out``, from a
folder of zoo agents (ALGO/ENV_1 run folders). Results are cached per agent and variant in ``--cache``
(JSON), so a long run resumes where it stopped; ``--label`` stores the edgekit variant under another
name (e.g. ``before``, with PYTHONPATH pointing at an older edgekit tree), and ``--table`` prints
naive / before / edgekit side by side from the cache without building anything:

    python scripts/bench_fidelity.py --split tuning --zoo ZOO_DIR --episodes 5 --cache tuning.json
    PYTHONPATH=OLD_TREE python scripts/bench_fidelity.py --split tuning --zoo ZOO_DIR --episodes 5 \
        --variants edgekit --label before --cache tuning.json
    python scripts/bench_fidelity.py --split tuning --zoo ZOO_DIR --cache tuning.json --table
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
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
    env_module: str | None = None


def agents(agents_dir: Path, split: str = "benchmark", zoo: Path | None = None) -> list[Agent]:
    from train_fidelity_agents import AGENTS, TUNING_AGENTS

    if split != "benchmark":
        from fidelity_split import SPLITS

        if zoo is None:
            raise SystemExit(f"--split {split} needs --zoo DIR (a folder of RL Zoo run folders)")
        trained = [Agent(name, spec["env"], agents_dir / f"{name}.zip", name) for name, spec in TUNING_AGENTS.items()]
        return (trained if split == "tuning" else []) + [
            Agent(a.name, a.env_id, zoo / a.folder, env_module=a.env_module) for a in SPLITS[split]]
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
    "naive": dict(input_scaling=False, output_range=False, finetune=False, input_split=0, widen=False,
                  per_channel=False),
    "edgekit": dict(),
}


def build_variant(agent: Agent, variant: str, episodes: int, work: Path, seed: int = 0,
                  env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    from edgekit.core.progress import Progress
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.stages.condition import ConditioningOptions

    start = time.perf_counter()
    result = build(BuildOptions(model=agent.path, env_id=agent.env_id, output=work / variant, force=True,
                                env_module=agent.env_module, recipe=replace(_recipe(agent.env_id), seed=seed),
                                env_kwargs=env_kwargs,
                                conditioning=ConditioningOptions(**VARIANTS[variant]),
                                report=ReportOptions(episodes=episodes)), Progress(quiet=True))
    wall = time.perf_counter() - start
    metrics = result.validation.metrics
    loop = result.report.report.get("closed_loop") or {}
    full_report = json.loads((work / variant / "report.json").read_text())
    check = full_report["build"]["edgetpu_check"]
    cover = full_report.get("coverage") or {}
    entry: dict[str, Any] = {
        "build_s": round(wall - result.timings.get("report (closed loop)", 0.0), 1),
        "score": loop.get("normalized_score") if isinstance(loop, dict) else None,
        "float_return": (loop.get("float") or {}).get("mean") if isinstance(loop, dict) else None,
        "int8_return": (loop.get("int8") or {}).get("mean") if isinstance(loop, dict) else None,
        "ops": list(result.manifest.models["cpu"].file and _ops(work / variant)),
        "edgetpu_share": check.get("tpu_share"),
        "conditioning": dict(result.manifest.conditioning),
        "inputs_clipped": f"{len(cover.get('flagged') or [])} of {len(cover.get('features') or [])} features",
    }
    if "continuous" in metrics:
        entry["mean_err"] = metrics["continuous"]["mean_share_of_range"]
        entry["p99_err"] = metrics["continuous"]["p99_share_of_range"]
    else:
        entry["agreement"] = metrics["discrete"]["agreement"]
        entry["decisive_agreement"] = metrics["discrete"]["decisive_agreement"]
    return entry


def _recipe(env_id: str) -> Any:
    """The recipe ``edgekit build`` would choose for the env."""
    from edgekit.stages.rollouts import recipe_for

    return recipe_for(env_id)[0]


def _ops(bundle: Path) -> list[str]:
    from edgekit.host.tflite_inspect import inspect_int8_model

    return list(inspect_int8_model(bundle / "model_int8.tflite").op_names)


def fidelity(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    if "error" in entry:
        return "build failed"
    if "mean_err" in entry:
        return f"{100 * entry['mean_err']:.2f} % / {100 * entry['p99_err']:.2f} %"
    decisive = entry["decisive_agreement"]
    return f"{100 * decisive:.2f} % ({100 * entry['agreement']:.1f} %)" if decisive is not None else "-"


def meets(entry: dict[str, Any]) -> bool:
    if "error" in entry:
        return False
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


def zoo_table(rows: dict[str, dict[str, Any]], label: str = "edgekit") -> str:
    """naive / before / ``label`` (edgekit's, unless another was stored) per agent, from the cache."""
    lines = [f"| agent | naive int8 | before | {label} | score (naive / before / {label}) | targets | "
             f"build s (before / {label}) |", "|---|---|---|---|---|---|---|"]
    met = 0
    for name, row in rows.items():
        n, b, e = (row.get(k) for k in ("naive", "before", label))
        ok = e is not None and meets(e)
        met += ok
        scores = " / ".join(_score(v) if v and "error" not in v else "-" for v in (n, b, e))
        builds = " / ".join(f"{v['build_s']:.0f}" if v and "build_s" in v else "-" for v in (b, e))
        lines.append(f"| {name} | {fidelity(n)} | {fidelity(b)} | {fidelity(e)} | {scores} | "
                     f"{'met' if ok else ('-' if e is None else 'MISSED')} | {builds} |")
    lines.append(f"\n{met} of {len(rows)} agents meet every target with edgekit's defaults.")
    why = [f"- {name}: {_why(row[label])}" for name, row in rows.items()
           if row.get(label) and "error" not in row[label] and not meets(row[label])]
    if why:
        lines += ["", "Why the misses miss (the build's simulated verdict; held-out inputs clipped by the int8 "
                  "input range, from its report):", *why]
    errors = [f"- {name}: {row[label]['error']}" for name, row in rows.items()
              if row.get(label) and "error" in row[label]]
    return "\n".join(lines + (["", "Build failures:", *errors] if errors else []))


def _why(entry: dict[str, Any]) -> str:
    verdict = (entry.get("conditioning") or {}).get("simulated_fidelity", "no simulation (not an MLP actor)")
    clipped = entry.get("inputs_clipped")
    score = entry.get("score")
    loop = f"; closed-loop score {score:.3f}" if isinstance(score, (int, float)) and score < 0.99 else ""
    return f"simulated error {verdict}" + (f"; held-out inputs clipped: {clipped}" if clipped else "") + loop


def _score(entry: dict[str, Any]) -> str:
    return f"{entry['score']:.3f}" if isinstance(entry.get("score"), (int, float)) else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=Path, default=Path("/tmp/fidelity-agents"))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", nargs="*", help="agent names (substring match)")
    parser.add_argument("--no-train", action="store_true", help="skip agents that are not trained yet")
    parser.add_argument("--split", choices=("benchmark", "tuning", "held-out"), default="benchmark")
    parser.add_argument("--zoo", type=Path, default=None, help="folder of RL Zoo run folders (ALGO/ENV_1)")
    parser.add_argument("--variants", default="naive,edgekit", help="comma-separated: naive, edgekit")
    parser.add_argument("--label", default="edgekit", help="store the edgekit variant under this name")
    parser.add_argument("--cache", type=Path, default=None, help="JSON cache of results: resume, --table")
    parser.add_argument("--table", action="store_true", help="print the cached results and exit")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the rollouts (calibration, held-out, closed loop); results cached per seed")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    from train_fidelity_agents import AGENTS, TUNING_AGENTS, train

    cache: dict[str, dict[str, Any]] = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    selected = [a for a in agents(args.agents, args.split, args.zoo)
                if not args.only or any(key in a.name for key in args.only)]
    if args.table:
        print(zoo_table({a.name: cache.get(a.name, {}) for a in selected}, args.label))
        return 0
    rows = []
    for agent in selected:
        if not agent.path.exists():
            if agent.trained_as and not args.no_train:
                args.agents.mkdir(parents=True, exist_ok=True)
                train(agent.trained_as, {**AGENTS, **TUNING_AGENTS}[agent.trained_as], args.agents)
            else:
                print(f"{agent.name}: {agent.path} missing, skipped", flush=True)
                continue
        row: dict[str, Any] = {"agent": agent.name, "env": agent.env_id, "variants": {}}
        cached = cache.setdefault(agent.name, {})
        with tempfile.TemporaryDirectory() as tmp:
            for variant in args.variants.split(","):
                label = (args.label if variant == "edgekit" else variant) + (f"@{args.seed}" if args.seed else "")
                if label in cached:
                    entry = cached[label]
                else:
                    entry = _build_or_error(agent, variant, args.episodes, Path(tmp), args.seed)
                    cached[label] = entry
                    if args.cache:
                        args.cache.write_text(json.dumps(cache, indent=2))
                row["variants"][label] = entry
                print(f"{agent.name:34s} {label:8s} {fidelity(entry):26s} score {_score(entry)}  "
                      f"build {entry.get('build_s', 0):.0f} s" + (f"  {entry['error']}" if "error" in entry else ""),
                      flush=True)
        rows.append(row)
    print()
    if args.split == "benchmark" and args.variants == "naive,edgekit" and args.label == "edgekit":
        print(table(rows))
    else:
        print(zoo_table({a.name: cache.get(a.name, {}) for a in selected}, args.label))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _build_or_error(agent: Agent, variant: str, episodes: int, work: Path, seed: int) -> dict[str, Any]:
    """A published agent that does not build is a result too (its one-line reason). When the given env id
    does not fit, the build is tried as a user would run it on the run folder alone (edgekit resolves the
    id the folder names), and once more with the env fix the build names (a version + kwargs that restore
    the agent's observation layout)."""
    try:
        return build_variant(agent, variant, episodes, work, seed)
    except Exception as exc:  # EdgekitError: refused with its reason; anything else: an edgekit bug to fix
        first = exc
    tries = [(replace(agent, env_id=None), None, "the env id the run folder names")]
    while tries:
        candidate, kwargs, how = tries.pop(0)
        try:
            return {**build_variant(candidate, variant, episodes, work, seed, kwargs), "env_fix": how}
        except Exception as exc:
            fix = getattr(exc, "suggestion", None)  # an env version + kwargs that restore the layout
            if fix is not None and not fix.module and kwargs is None:
                tries.append((replace(agent, env_id=fix.id), dict(fix.kwargs),
                              f"--env {fix.id} --env-kwargs '{json.dumps(dict(fix.kwargs))}'"))
    return {"error": f"{type(first).__name__}: {first}".splitlines()[0][:300]}


if __name__ == "__main__":
    sys.exit(main())
