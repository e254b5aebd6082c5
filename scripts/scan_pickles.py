"""Which globals do published agents' pickles name, and does edgekit's restricted unpickler read them?

    python scripts/scan_pickles.py FOLDER [FOLDER...] [--globals]

Walks every SB3 ``*.zip`` and ``*.pkl`` (VecNormalize statistics) below the
folders. For each zip it decodes the pickled fields edgekit reads
(``observation_space``, ``action_space``, ``policy_kwargs``) and each ``.pkl``
with the restricted unpickler, and prints one line per file it refuses.
``--globals`` also lists every global any pickled field names (including the
fields edgekit never decodes: schedules, buffers) with the fields naming it:
what the allow-list of ``edgekit.host.loading.pickle_rules`` is measured against.
Nothing is executed: names are read with ``pickletools``. Exit status 1 when a
file is refused.
"""

from __future__ import annotations

import argparse
import base64
import json
import pickletools
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

from edgekit.core.errors import EdgekitError
from edgekit.host.loading.restricted_unpickle import restricted_loads
from edgekit.host.loading.vecnormalize import STAND_INS

DECODED = ("observation_space", "action_space", "policy_kwargs")
_STRINGS = ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8")


def globals_named(payload: bytes) -> set[str]:
    """``module.name`` of every GLOBAL, INST and STACK_GLOBAL, following memoized strings."""
    found, stack, memo = set(), [], {}
    for op, arg, _pos in pickletools.genops(payload):
        if op.name in ("GLOBAL", "INST"):
            found.add(str(arg).replace(" ", "."))
            stack.append(None)
        elif op.name in _STRINGS:
            stack.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else None
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{stack[-2]}.{stack[-1]}" if len(stack) >= 2 else "?")
            stack.append(None)
        else:
            stack.append(None)
    return found


def scan(folders: list[Path], names: dict[str, set[str]]) -> tuple[int, list[str]]:
    """(files read, one line per refused file); ``names`` collects global -> fields naming it."""
    read, refused = 0, []
    for folder in folders:
        for path in sorted(folder.rglob("*.zip")):
            read += 1
            try:
                data = json.loads(zipfile.ZipFile(path).read("data"))
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                refused.append(f"{path}: not an SB3 zip ({exc})")
                continue
            for field, item in data.items():
                if not isinstance(item, dict) or ":serialized:" not in item:
                    continue
                payload = base64.b64decode(item[":serialized:"])
                for name in _names(payload):
                    names[name].add(field)
                if field in DECODED:
                    try:
                        restricted_loads(payload, f"{path.name}'s {field}")
                    except EdgekitError as exc:
                        refused.append(f"{path}: {exc}")
        for path in sorted(folder.rglob("*.pkl")):
            read += 1
            payload = path.read_bytes()
            for name in _names(payload):
                names[name].add(path.name)
            try:
                restricted_loads(payload, path.name, extra=STAND_INS)
            except EdgekitError as exc:
                refused.append(f"{path}: {exc}")
    return read, refused


def _names(payload: bytes) -> set[str]:
    try:
        return globals_named(payload)
    except Exception as exc:  # pickletools raises several types on damaged data
        return {f"<damaged pickle: {type(exc).__name__}>"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--globals", action="store_true", help="list every global the pickles name")
    args = parser.parse_args()
    names: dict[str, set[str]] = defaultdict(set)
    read, refused = scan(args.folders, names)
    if args.globals:
        for name in sorted(names):
            print(f"{name:72s} {', '.join(sorted(names[name]))}")
    for line in refused:
        print(f"refused: {line}")
    print(f"{read} files, {read - len({line.split(': ')[0] for line in refused})} read by the restricted unpickler, "
          f"{len(refused)} refusals")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
