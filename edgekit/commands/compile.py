"""``edgekit compile BUNDLE``: run Google's edgetpu_compiler on a bundle and record the result in it."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgekit.core.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="compile a bundle's int8 model for the Edge TPU (needs edgetpu_compiler, x86-64 Linux)",
        description="Run edgetpu_compiler on the bundle's CPU int8 model, add model_int8_edgetpu.tflite and the "
        "compiler's log to the bundle, and record the compiler version and the new files' sha256 in its "
        "manifest. Ops the compiler leaves on the CPU are a warning (an error with --require-full-tpu).",
    )
    p.add_argument("bundle", type=Path, help="bundle directory written by `edgekit build`")
    p.add_argument("--compiler", metavar="PATH", default=None,
                   help="the edgetpu_compiler executable (default: edgetpu_compiler on PATH)")
    p.add_argument("--timeout", type=float, default=180.0, metavar="S",
                   help="stop the compiler after S seconds (default: 180)")
    p.add_argument("--min-runtime", type=int, default=None, metavar="N",
                   help="oldest Edge TPU runtime the model must run on (the compiler's -m; default: its own)")
    p.add_argument("--require-full-tpu", action="store_true",
                   help="fail, leaving the bundle unchanged, unless every op maps to the Edge TPU")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.edgetpu.bundle_compile import compile_bundle

    if not 0 < args.timeout <= 86_400:
        raise UsageError("--timeout must lie between 0 and 86,400 seconds")
    result = compile_bundle(args.bundle, compiler=args.compiler, timeout=args.timeout,
                            min_runtime=args.min_runtime, require_full_tpu=args.require_full_tpu)
    log = result.log
    print(f"compiled {args.bundle / result.model_file} with edgetpu_compiler {result.compiler_version} "
          f"in {result.seconds:.1f} s (log: {result.log_file})")
    total = log.ops_total if log.ops_total is not None else sum(op.count for op in log.ops)
    if total and log.cpu_op_count is not None:
        print(f"ops on the Edge TPU: {total - log.cpu_op_count} of {total}, on the CPU: {log.cpu_op_count}; "
              f"Edge TPU subgraphs: {log.subgraphs}")
    else:
        print("the compiler's output does not count the ops (see the log)")
    print(f"on-chip parameter memory used {_size(log.on_chip_used_bytes)}, remaining "
          f"{_size(log.on_chip_remaining_bytes)}; off-chip streaming {_size(log.off_chip_bytes)}")
    for op in log.ops:
        print(f"  {op.operator:<24} {op.count:>5}  {op.status}")
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 1024:.2f} KiB" if n < 1024**2 else f"{n / 1024**2:.2f} MiB"
