"""``edgekit bench BUNDLE``: latency of raw invoke and full predict on every device."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekit.core.errors import DeviceError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure invoke and predict latency on the CPU and each Edge TPU",
        description="Time raw interpreter invoke() and full EdgePolicy.predict (quantize, invoke, dequantize, "
        "post-process) on the bundle's held-out observations, on each device, and say which is faster.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory written by `edgekit build`")
    p.add_argument("--device", action="append", dest="devices", metavar="DEVICE",
                   help="device to bench: auto, cpu, usb[:N], pci[:N] (repeatable; default: cpu, plus usb and "
                   "pci if the bundle is compiled)")
    p.add_argument("--iterations", type=int, default=2000, help="timed calls per measurement (default: 2000)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.bundle.manifest import Manifest
    from edgekit.runtime.bench import as_dict, bench_devices

    if not 10 <= args.iterations <= 10_000_000:
        raise UsageError("--iterations must lie between 10 and 10,000,000")
    manifest = Manifest.read(args.bundle)
    devices = args.devices or (["cpu", "usb", "pci"] if "edgetpu" in manifest.models else ["cpu"])
    results, notes = bench_devices(args.bundle, devices, args.iterations)
    if args.json:
        print(json.dumps({"results": as_dict(results), "unavailable": notes}, indent=2))
    else:
        print(f"{'device':<8} {'what':<8} {'p50 us':>9} {'p99 us':>9} {'max us':>9}")
        for r in results:
            for what, s in (("invoke", r.invoke), ("predict", r.predict)):
                print(f"{r.device:<8} {what:<8} {s['p50_us']:9.1f} {s['p99_us']:9.1f} {s['max_us']:9.1f}")
        for note in notes:
            print(f"unavailable: {note}")
        if len(results) > 1:
            best = min(results, key=lambda r: r.predict["p50_us"])
            print(f"fastest predict: {best.device}")
    if not results:
        raise DeviceError(f"no requested device could be opened ({'; '.join(notes)})", hint="use --device cpu")
    return 0
