"""``edgekit verify BUNDLE``: check a bundle on the device it will run on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekit.core.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a bundle's files and that this device computes what the build host computed",
        description="Verify every file's sha256, load the model on --device and compare its outputs on the "
        "bundle's verification observations with the build host's, within a tolerance in int8 output steps "
        "(interpreters and the Edge TPU round differently by a few steps), and its actions with the host's (a "
        "difference the tolerance does not explain, or a NaN action, fails). Exit 1 when it does not match.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory written by `edgekit build`")
    p.add_argument("--device", default="auto", help="auto (default), cpu, usb, usb:N, pci or pci:N")
    p.add_argument("--interpreter", default=None, choices=("ai_edge_litert", "tflite_runtime", "tensorflow"))
    p.add_argument("--tolerance-steps", type=float, default=None, metavar="N",
                   help="largest allowed difference from the host, in int8 output steps (default: 3, or twice "
                   "the spread between the build host's own TFLite kernels on this model if larger)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.runtime.verify import verify_bundle

    tolerance = args.tolerance_steps
    if tolerance is not None and not 0 <= tolerance < float("inf"):
        raise UsageError(f"--tolerance-steps {tolerance:g} is not a number of int8 steps >= 0",
                         hint="give a finite number such as 3, or leave it out for the bundle's default")

    result = verify_bundle(args.bundle, device=args.device, interpreter=args.interpreter,
                           tolerance_steps=args.tolerance_steps)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        mark = "✓" if result.max_steps <= result.tolerance_steps else "✗"
        print(f"files: {result.files_checked} sha256 checked ✓")
        print(f"outputs on {result.device} ({result.interpreter}) vs build host, {result.samples} observations: "
              f"max {result.max_steps:.0f} int8 steps, mean {result.mean_steps:.2f} "
              f"(tolerance {result.tolerance_steps:g}) {mark}")
        line = f"actions differing from the host's: {result.action_mismatches}"
        if result.non_finite_actions:
            line += f", {result.non_finite_actions} not finite (NaN or infinity) ✗"
        elif result.unexplained_mismatches:
            line += f", {result.unexplained_mismatches} beyond what the output tolerance explains ✗"
        elif result.action_mismatches:
            line += " (all within the output tolerance)"
        print(line)
    return 0 if result.passed else 1
