"""``edgekit check MODEL.tflite|BUNDLE``: will this model map onto the Edge TPU? (no compiler needed)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXIT_NOT_MAPPABLE = 3  # distinct from errors (1) and bad usage (2), for scripts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="predict, without the compiler, which ops of a model the Edge TPU will run",
        description="Read a .tflite model (or a bundle's CPU int8 model) and apply Coral's published Edge TPU "
        "requirements op by op: 8-bit tensors, static shapes, constant parameters, the tensor rank rule, the "
        "supported-operations list and its limitations, and the single graph cut. Prints a per-op table, the "
        f"predicted share of ops on the Edge TPU and parameter memory; exits {EXIT_NOT_MAPPABLE} when the model "
        "is not fully mappable. A prediction: only edgetpu_compiler has the last word.",
    )
    p.add_argument("model", type=Path, metavar="MODEL.tflite|BUNDLE",
                   help="a .tflite file or a bundle directory written by `edgekit build`")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.edgetpu.check import check_path, format_report

    report = check_path(args.model)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.fully_mappable else EXIT_NOT_MAPPABLE
