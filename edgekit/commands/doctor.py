"""``edgekit doctor [BUNDLE]``: would the Edge TPU path work on this machine, and what fixes it if not.

Reads the OS release, Python, interpreter, libedgetpu, the Coral USB device and its permissions and, on a
Raspberry Pi 5, the USB current setting (``edgekit.device.facts``), judges them against the table of
tested pairs (``edgekit.device.diagnosis``) and prints one line per finding with its fix. With a bundle
it also checks the bundle and probes its Edge TPU model (and its CPU model) in a child process
(``edgekit.runtime.probe``). Exits 1 when the Edge TPU path would not work. Imports no TensorFlow, torch,
SB3 or gymnasium, no interpreter unless a bundle is given, and never loads libedgetpu or a model in its own
process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.core.errors import EdgekitError

if TYPE_CHECKING:
    from edgekit.bundle.manifest import Manifest
    from edgekit.device.diagnosis import Finding

_MARK = {"ok": "ok  ", "info": "    ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check that the Edge TPU path works here (OS, interpreter, libedgetpu, USB access, power)",
        description="Check this machine for running bundles on a Coral Edge TPU: OS release and Python, the "
        "TFLite interpreter and libedgetpu against the table of tested pairs, the Coral USB Accelerator and "
        "this user's access to it, and on a Raspberry Pi 5 the USB current. With a BUNDLE, also check it and "
        "probe its Edge TPU model in a child process. Exits 1, printing the fix, when the Edge TPU path would "
        "not work. EDGEKIT_LIBEDGETPU=PATH names the library; EDGEKIT_SYSROOT=DIR reads a laid-out root "
        "instead of / (tests).",
    )
    p.add_argument("bundle", type=Path, nargs="?", help="a bundle to check and probe (optional)")
    p.add_argument("--device", default="usb", metavar="DEVICE",
                   help="the Edge TPU to probe the bundle on: usb, usb:N, pci, pci:N (default: usb)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.device.diagnosis import FAIL, diagnose, verdict
    from edgekit.device.facts import gather
    from edgekit.device.pairs import load_table

    if args.bundle is not None:
        edgetpu_device(args.device)  # a usage error before anything runs
    facts = gather()
    findings = diagnose(facts, load_table())
    if args.bundle is not None:
        findings += bundle_findings(args.bundle, args.device)
    ok = verdict(findings)
    if args.json:
        print(json.dumps({"edgetpu_path_works": ok, "findings": [f.to_dict() for f in findings]}, indent=2))
        return 0 if ok else 1
    for finding in findings:
        print(f"[{_MARK.get(finding.status, finding.status)}] {finding.topic}: {finding.detail}")
        if finding.fix and finding.status != "ok":
            print(f"       fix: {finding.fix}")
    failed = sum(1 for f in findings if f.status == FAIL)
    if ok:
        print("result: nothing stops the Edge TPU path here" + ("" if args.bundle else
              " (give a bundle to probe its Edge TPU model)"))
    else:
        print(f"result: the Edge TPU path would not work here ({failed} problem{'s' if failed > 1 else ''} above); "
              "--device cpu still runs the CPU int8 model")
    return 0 if ok else 1


def edgetpu_device(text: str) -> str:
    """``--device`` checked: an Edge TPU (auto, usb[:N], pci[:N]); cpu is not one."""
    from edgekit.core.errors import UsageError
    from edgekit.runtime.interpreters import DeviceRequest

    request = DeviceRequest.parse(text)
    if request.kind == "cpu":
        raise UsageError("doctor probes the Edge TPU path: --device names the Edge TPU (the CPU model is probed "
                         "anyway)", hint="use --device auto, usb, usb:N, pci or pci:N")
    return str(request)


def bundle_findings(bundle: Path, device: str) -> list[Finding]:
    """The bundle's own checks, then the child-process probes of its models."""
    from edgekit.bundle.manifest import Manifest
    from edgekit.device.diagnosis import FAIL, OK, Finding

    try:
        manifest = Manifest.read(bundle)
    except EdgekitError as exc:
        return [Finding("bundle", FAIL, f"{bundle}: {exc.message}", exc.hint)]
    if "edgetpu" not in manifest.models:
        found = [Finding("bundle", FAIL, f"{bundle} has no Edge TPU model (only the CPU int8 model)",
                         "compile it on an x86-64 Linux machine with edgetpu_compiler: edgekit compile BUNDLE")]
    else:
        found = [Finding("bundle", OK, f"{bundle}: Edge TPU model {manifest.models['edgetpu'].file}"),
                 probe_finding(bundle, manifest, "edgetpu", device)]
    return found + [probe_finding(bundle, manifest, "cpu", "cpu")]


PROBE_TOPIC = {"edgetpu": "Edge TPU probe", "cpu": "CPU model probe"}


def probe_finding(bundle: Path, manifest: Manifest, role: str, device: str) -> Finding:
    """The child-process probe of one of the bundle's models (``role``: edgetpu or cpu) as one Finding.

    THE ONE PLACE that calls the runtime's probe (``edgekit.runtime.probe.probe_model``): the model is
    checked as ``EdgePolicy.load`` checks it (its sha256 against the manifest, its flatbuffer structure),
    then opened and invoked once in a child process, with libedgetpu's delegate for ``device`` when it is
    the Edge TPU model. A clean invoke is OK; a signal death, a hang, a NULL delegate, an exception or no
    libedgetpu at all is FAIL with the probe's message and fix. The CPU model is probed too: it is what
    ``--device auto`` falls back to, and a crafted one fails there. The doctor probes afresh (a cached
    success from before the Coral was pulled proves nothing now) and caches nothing. Finding the
    interpreter imports it here; libedgetpu and the models are only ever loaded in the child.
    """
    from edgekit.device.diagnosis import FAIL, OK, Finding
    from edgekit.runtime.model_files import read_model
    from edgekit.runtime.probe import probe_model

    topic = PROBE_TOPIC[role]
    try:
        model = read_model(bundle, manifest, manifest.models[role].file)
        result = probe_model(model.path, device=device, use_cache=False)
    except EdgekitError as exc:  # an altered or malformed model, no interpreter, a bad --device
        return Finding(topic, FAIL, exc.message, exc.hint)
    error = result.error()
    if error is not None:
        return Finding(topic, FAIL, error.message, error.hint)
    delegate = f"libedgetpu {result.library} created its delegate for {result.device}; " if result.edgetpu else ""
    return Finding(topic, OK, f"{model.name}: {delegate}the model loaded{' with it' if delegate else ''} and ran "
                   f"once with {result.interpreter}, in a child process ({result.seconds:.1f} s)")
