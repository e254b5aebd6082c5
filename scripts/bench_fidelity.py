"""Fidelity benchmark: how close the int8 policy stays to the float one, per conditioning variant.

For each agent zip (default: every zip in /tmp/fidelity-agents, made by
scripts/train_fidelity_agents.py, plus the shipped example), build three bundles
— plain (no conditioning), ranges (input scaling + output range), full (ranges +
int8-aware distillation) — and report on the held-out observations:

* continuous actions: mean / p99 action error as a share of the action range
  (targets: <= 0.5 % mean, <= 2 % p99);
* discrete actions: argmax agreement overall and on decisive states (target >= 99.5 %);
* closed loop: normalized score (R_int8 - R_random) / (R_float - R_random) over
  N seeded episodes (target >= 0.99).

    python scripts/bench_fidelity.py [--agents DIR] [--episodes 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ENV_OF = {"pendulum": "Pendulum-v1", "cartpole": "CartPole-v1", "acrobot": "Acrobot-v1",
          "mountaincar": "MountainCar-v0", "mountaincarcontinuous": "MountainCarContinuous-v0"}
VARIANTS = {  # ConditioningOptions(input_scaling, output_range, finetune, input_split=...)
    "plain": dict(input_scaling=False, output_range=False, finetune=False, input_split=0),
    "ranges": dict(input_scaling=True, output_range=True, finetune=False, input_split=0),
    "ranges+ft": dict(input_scaling=True, output_range=True, finetune=True, input_split=0),
    "full": dict(),  # the default: ranges, distillation and the split (about 16-bit) input
}


def env_for(path: Path) -> str:
    stem = path.stem.lower().replace("-v1", "").replace("-v0", "")
    return ENV_OF[stem.split("-")[-1]]


def returns(act: Any, env_id: str, episodes: int, seed: int) -> np.ndarray:
    import gymnasium as gym

    env = gym.make(env_id)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        env.action_space.seed(seed + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs, env))
            total += float(r)
            done = term or trunc
        out.append(total)
    env.close()
    return np.array(out)


def bench_agent(model_path: Path, episodes: int, work: Path, variants: list[str]) -> dict[str, Any]:
    from edgekit.loading import load_agent
    from edgekit.pipeline import BuildOptions, ReportOptions, build
    from edgekit.progress import Progress
    from edgekit.runtime import EdgePolicy
    from edgekit.stages.condition import ConditioningOptions

    env_id = env_for(model_path)
    agent = load_agent(model_path)
    model = agent.model
    r_float = returns(lambda o, e: model.predict(o, deterministic=True)[0], env_id, episodes, 1000)
    r_random = returns(lambda o, e: e.action_space.sample(), env_id, episodes, 1000)
    row: dict[str, Any] = {"agent": model_path.stem, "env": env_id, "float_return": float(r_float.mean()),
                           "random_return": float(r_random.mean()), "variants": {}}
    for name in variants:
        kwargs = VARIANTS[name]
        bundle = work / f"{model_path.stem}-{name}"
        result = build(BuildOptions(model=model_path, env_id=env_id, output=bundle, force=True,
                                    conditioning=ConditioningOptions(**kwargs), report=ReportOptions(episodes=0)),
                       Progress(quiet=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            policy = EdgePolicy.load(bundle, device="cpu")
        r_int8 = returns(lambda o, e, p=policy: p.predict(np.asarray(o, dtype=np.float32)), env_id, episodes, 1000)
        denom = r_float.mean() - r_random.mean()
        score = float((r_int8.mean() - r_random.mean()) / denom) if abs(denom) > 1e-9 else float("nan")
        v = result.validation.metrics
        entry = {"int8_return": float(r_int8.mean()), "score": score, "build_s": sum(result.timings.values())}
        if "continuous" in v:
            entry["mean_err"] = v["continuous"]["mean_share_of_range"]
            entry["p99_err"] = v["continuous"]["p99_share_of_range"]
        else:
            entry["agreement"] = v["discrete"]["agreement"]
            entry["decisive_agreement"] = v["discrete"]["decisive_agreement"]
        row["variants"][name] = entry
        print(f"{model_path.stem:24s} {name:7s} " + " ".join(
            f"{k}={v:.4g}" for k, v in entry.items() if isinstance(v, float)), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=Path, default=Path("/tmp/fidelity-agents"))
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-example", action="store_true", help="skip the shipped example agent")
    parser.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), default=None)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    zips = ([] if args.no_example else [repo / "examples" / "ppo-Pendulum-v1.zip"]) + sorted(args.agents.glob("*.zip"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in zips:
            rows.append(bench_agent(path, args.episodes, Path(tmp), args.variants or list(VARIANTS)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
