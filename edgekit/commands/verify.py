"""``edgekit verify BUNDLE``: check a bundle on the device it will run on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a bundle's files and that this device computes what the build host computed",
        description="Verify every file's sha256, load the model on --device and compare its outputs on the "
        "bundle's verification observations with the build host's, within a tolerance in int8 output steps "
        "(interpreters and the Edge TPU round differently by a few steps). Exit 1 when it does not match.",
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

    result = verify_bundle(args.bundle, device=args.device, interpreter=args.interpreter,
                           tolerance_steps=args.tolerance_steps)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        mark = "✓" if result.passed else "✗"
        print(f"files: {result.files_checked} sha256 checked ✓")
        print(f"outputs on {result.device} ({result.interpreter}) vs build host, {result.samples} observations: "
              f"max {result.max_steps:.0f} int8 steps, mean {result.mean_steps:.2f} "
              f"(tolerance {result.tolerance_steps:g}) {mark}")
        print(f"actions differing from the host's: {result.action_mismatches}")
    return 0 if result.passed else 1
