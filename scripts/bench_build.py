"""Benchmark `edgekit build` on the shipped example agent.

What is measured:
  - wall-clock and CPU time (user + system, of the subprocess and its children) of the
    whole command, as a subprocess (interpreter start-up and every import included),
    repeated --repeat times, alternating with the same build without the measured
    conditioning steps ("plain", the baseline of the ratio):
        edgekit build examples/ppo-Pendulum-v1.zip --env Pendulum-v1 -o TMP --force -q
        edgekit build ... --no-split-input --no-finetune --no-widen --no-per-channel
    each run printed, then the medians, the minimum and the ratio default / plain;
  - one more run without -q, whose progress lines are shown, and the per-stage timings
    the build recorded in the bundle's report.json (key "timings_s").

Targets: median wall time <= 30 s, and the default build <= 2x the plain one (median wall
time; the CPU-time ratio is printed beside it: on a machine shared with other jobs it is
the steadier of the two). Exit code 0 when both are met, 1 otherwise.

    python scripts/bench_build.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "ppo-Pendulum-v1.zip"
DEFAULT_ENV = "Pendulum-v1"
TARGET_S = 30.0
TARGET_RATIO = 2.0
PLAIN_FLAGS = ("--no-split-input", "--no-finetune", "--no-widen", "--no-per-channel")
_PROGRESS_LINE = re.compile(r"^\s*\[\d+/\d+\]\s+(.+?)\s{2,}([0-9.]+) s\b")


def build_command(model: Path, env_id: str, output: Path, quiet: bool, flags: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "edgekit", "build", str(model), "--env", env_id, "-o", str(output), "--force",
           *flags]
    return [*cmd, "-q"] if quiet else cmd


def timed_build(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str], float]:
    """Wall-clock and CPU seconds of one build subprocess; exits with its output if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return elapsed, proc, cpu


def progress_timings(output: str) -> dict[str, float]:
    """Stage seconds from the progress lines, e.g. ``[5/8] convert (onnx2tf)   7.9 s  ...``."""
    timings = {}
    for line in output.splitlines():
        match = _PROGRESS_LINE.match(line)
        if match:
            timings[match.group(1)] = float(match.group(2))
    return timings


def read_report(bundle: Path) -> dict[str, Any]:
    """The build's own section of report.json (the full report keeps it under "build")."""
    report = json.loads((bundle / "report.json").read_text())
    return report.get("build") or report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed quiet builds (default: 3)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help=f"SB3 model.zip to build (default: {DEFAULT_MODEL.relative_to(REPO)})")
    parser.add_argument("--env", dest="env_id", default=DEFAULT_ENV, help=f"Gymnasium id (default: {DEFAULT_ENV})")
    parser.add_argument("--target", type=float, default=TARGET_S,
                        help=f"target for the median wall time, seconds (default: {TARGET_S:g})")
    parser.add_argument("--no-verbose-run", action="store_true",
                        help="skip the extra run without -q (and its per-stage timings)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every number as JSON to PATH")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")

    results: dict[str, Any] = {
        "model": str(args.model),
        "env_id": args.env_id,
        "repeat": args.repeat,
        "target_s": args.target,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    }
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-build-") as tmp:
        bundle = Path(tmp) / "bundle"
        quiet_cmd = build_command(args.model, args.env_id, bundle, quiet=True)
        plain_cmd = build_command(args.model, args.env_id, Path(tmp) / "plain", quiet=True, flags=PLAIN_FLAGS)
        shown = " ".join(["edgekit", *quiet_cmd[3:]])
        shown_plain = " ".join(["edgekit", *plain_cmd[3:]])
        print(f"timing {args.repeat} x `{shown}`\n   and {args.repeat} x `{shown_plain}`, alternating")
        times: list[float] = []
        cpu: list[float] = []
        plain_times: list[float] = []
        plain_cpu: list[float] = []
        for i in range(args.repeat):
            for label, cmd, walls, cpus in (("default", quiet_cmd, times, cpu),
                                            ("plain", plain_cmd, plain_times, plain_cpu)):
                elapsed, _, used = timed_build(cmd)
                walls.append(elapsed)
                cpus.append(used)
                print(f"  run {i + 1}/{args.repeat} {label:8s}: {elapsed:6.2f} s wall, {used:6.2f} s CPU", flush=True)
        results["command"] = shown
        results["runs_s"] = times
        results["cpu_s"] = cpu
        results["median_s"] = statistics.median(times)
        results["min_s"] = min(times)
        results["max_s"] = max(times)
        results["quiet_report_timings_s"] = read_report(bundle)["timings_s"]  # of the last quiet run
        results["plain"] = {"command": shown_plain, "runs_s": plain_times, "cpu_s": plain_cpu,
                            "median_s": statistics.median(plain_times),
                            "quiet_report_timings_s": read_report(Path(tmp) / "plain")["timings_s"]}
        results["ratio_wall"] = results["median_s"] / results["plain"]["median_s"]
        results["ratio_cpu"] = statistics.median(cpu) / statistics.median(plain_cpu)

        if not args.no_verbose_run:
            verbose_cmd = build_command(args.model, args.env_id, bundle, quiet=False)
            print(f"\none run without -q: `{' '.join(['edgekit', *verbose_cmd[3:]])}`")
            elapsed, proc, _ = timed_build(verbose_cmd)
            for line in (proc.stdout + proc.stderr).splitlines():
                print(f"  | {line}")
            stages = read_report(bundle)["timings_s"]
            in_stages = sum(stages.values())
            results["verbose_run"] = {"wall_s": elapsed, "timings_s": stages, "stages_total_s": in_stages,
                                      "outside_stages_s": elapsed - in_stages}
            printed = progress_timings(proc.stdout + proc.stderr)
            results["verbose_run"]["progress_lines_s"] = printed
            print("\nper-stage timings from report.json (timings_s):")
            for name, seconds in stages.items():
                print(f"  {name:24s} {seconds:7.2f} s  {100 * seconds / elapsed:5.1f}%")
            for name in printed.keys() - stages.keys():  # report.json is written inside the last stage
                print(f"  {name:24s} {'-':>7s}    (not in report.json; progress line says {printed[name]:.1f} s)")
            print(f"  {'sum of stages':24s} {in_stages:7.2f} s")
            print(f"  {'outside stages':24s} {elapsed - in_stages:7.2f} s  (interpreter start-up, CLI imports, exit)")
            print(f"  {'wall clock':24s} {elapsed:7.2f} s")

    time_ok = results["median_s"] <= args.target
    ratio_ok = results["ratio_wall"] <= TARGET_RATIO
    ok = time_ok and ratio_ok
    results["pass"] = ok
    print()
    print(f"{'target':40s} {'measured':>10s} {'target':>10s}  result")
    print(f"{'build wall time, median of ' + str(args.repeat):40s} {results['median_s']:8.2f} s "
          f"{'<= ' + format(args.target, 'g') + ' s':>10s}  {'PASS' if time_ok else 'FAIL'}")
    print(f"{'build wall time, min':40s} {results['min_s']:8.2f} s")
    print(f"{'plain build wall time, median':40s} {results['plain']['median_s']:8.2f} s")
    print(f"{'default / plain, median wall time':40s} {results['ratio_wall']:8.2f} x "
          f"{'<= ' + format(TARGET_RATIO, 'g') + ' x':>10s}  {'PASS' if ratio_ok else 'FAIL'}")
    print(f"{'default / plain, median CPU time':40s} {results['ratio_cpu']:8.2f} x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
