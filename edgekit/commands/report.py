"""``edgekit report BUNDLE``: how far the int8 policy is from the float one (report.json + report.html)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgekit.commands.arg_types import seed
from edgekit.commands.env_options import add_env_arguments, given_env
from edgekit.report.thresholds import EXIT_THRESHOLD_FAILED, add_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the quantization-error report of a bundle (report.json, report.html)",
        description="Compare the bundle's int8 policy with the float policy: numeric error on the held-out "
        "observations, closed-loop returns of float, int8 and random policies over the same seeds, per-layer "
        "error and input coverage. Writes report.json and report.html and prints a summary; exits "
        f"{EXIT_THRESHOLD_FAILED} after writing them if an enforced threshold fails.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory written by `edgekit build`")
    p.add_argument("--model", type=Path, default=None, metavar="MODEL.zip",
                   help="the SB3 model the bundle was built from: the float reference for actions and the closed "
                   "loop (without it, the bundle's policy.onnx is the reference and the float policy does not play)")
    add_env_arguments(p, "env of the closed loop: a Gymnasium id, module:Id or module:EnvClass (default: the "
                      "bundle's; one that needs a module imported must be named here)")
    p.add_argument("--episodes", type=int, default=10, metavar="N",
                   help="closed-loop episodes per policy; 0 skips the closed loop (default: 10)")
    p.add_argument("--seed", type=seed, default=0, metavar="S", help="episode i is reset with seed S + i (default: 0)")
    add_arguments(p)
    p.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help="where to write report.json and report.html (default: the bundle directory)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.report.build_report import write_report
    from edgekit.report.summary import summary_lines
    from edgekit.report.thresholds import from_args

    thresholds = from_args(args)
    result = write_report(args.bundle, args.model, given_env(args), args.episodes, args.seed, thresholds, args.output,
                          log=lambda msg: print(f"... {msg}", file=sys.stderr, flush=True))
    for line in summary_lines(result.report):
        print(line)
    print(f"report: {result.json_path} and {result.html_path}")
    return result.exit_code
