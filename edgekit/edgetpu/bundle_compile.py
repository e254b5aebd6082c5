"""Compile a bundle's CPU int8 model for the Edge TPU and record the result in the bundle.

Used by ``edgekit compile BUNDLE`` (e.g. on the one x86-64 machine that has
the compiler, after building elsewhere) and by the build. The bundle stays
valid at every step: the compiler writes into a scratch directory inside the
bundle, the finished files are renamed into place, and ``manifest.json`` is
replaced last, atomically, with the new model entry, the compiler version and
the sha256 of the new files. A failed or refused compile leaves the bundle as
it was.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgekit.bundle.files import verify_file
from edgekit.bundle.layout import EDGETPU_COMPILE_LOG as COMPILE_LOG
from edgekit.bundle.layout import EDGETPU_MODEL, record_files
from edgekit.bundle.manifest import Manifest, ModelEntry, TensorSpec
from edgekit.core.cleanup import scratch_directory
from edgekit.core.errors import CompilerError, EdgekitError, UsageError
from edgekit.edgetpu import EdgeTPUMappingWarning
from edgekit.edgetpu.compiler import CompilerRun, compile_model, compiler_version, failure_detail, find_compiler
from edgekit.edgetpu.log import CompileLog, parse_compile_log

MIN_RUNTIME_RANGE = range(10, 100)  # Edge TPU runtime versions the compiler's -m accepts are two-digit


@dataclass(frozen=True)
class CompileResult:
    """What ``compile_bundle`` did: the new files, the compiler and its parsed log."""

    bundle_dir: Path
    model_file: str
    log_file: str
    compiler: str
    compiler_version: str
    log: CompileLog
    manifest: Manifest
    seconds: float

    @property
    def fully_mapped(self) -> bool:
        return self.log.fully_mapped

    def to_dict(self) -> dict[str, Any]:
        """For the build report."""
        return {"model_file": self.model_file, "log_file": self.log_file, "compiler": self.compiler,
                "compiler_version": self.compiler_version, "seconds": round(self.seconds, 3), **self.log.to_dict()}


def compile_bundle(bundle_dir: Path, compiler: str | None = None, timeout: float = 180,
                   min_runtime: int | None = None, require_full_tpu: bool = False) -> CompileResult:
    """Compile ``bundle_dir``'s CPU model into ``model_int8_edgetpu.tflite`` and update the manifest.

    Raises ``CompilerMissingError`` (a ``CompilerError``) when there is no compiler, ``CompilerError``
    when it fails, times out, or (with ``require_full_tpu``) leaves ops on the CPU; otherwise a model
    that is not fully mapped is an ``EdgeTPUMappingWarning``.
    """
    bundle_dir = Path(bundle_dir)
    if min_runtime is not None and min_runtime not in MIN_RUNTIME_RANGE:
        raise UsageError(f"--min-runtime {min_runtime} is not an Edge TPU runtime version",
                         hint="pass a runtime version such as 13 or 14 (the compiler's -m option)")
    manifest = Manifest.read(bundle_dir)
    cpu = manifest.models["cpu"]
    source = verify_file(bundle_dir, manifest, cpu.file)
    path = find_compiler(compiler)
    version = compiler_version(path)
    start = time.monotonic()
    with scratch_directory(".edgetpu-", bundle_dir) as scratch:  # removed on a stop signal too
        run = compile_model(path, source, scratch, timeout=timeout, min_runtime=min_runtime, version=version)
        produced = scratch / f"{Path(cpu.file).stem}_edgetpu.tflite"
        if not produced.is_file():
            raise CompilerError(f"{Path(path).name} exited 0 but wrote no {produced.name}: {failure_detail(run)}",
                                hint="run the compiler by hand on the bundle's model to see what it prints")
        own_log = scratch / f"{Path(cpu.file).stem}_edgetpu.log"
        own_text = own_log.read_text(encoding="utf-8", errors="replace") if own_log.is_file() else ""
        log = parse_compile_log(run.output + "\n" + own_text)
        if not log.fully_mapped and require_full_tpu:
            raise CompilerError(f"the model is not fully mapped to the Edge TPU: {'; '.join(log.reasons)}",
                                hint="see `edgekit check` for the op that cuts the graph, or drop --require-full-tpu")
        log_path = scratch / COMPILE_LOG
        log_path.write_text(_log_text(run, own_log.name, own_text), encoding="utf-8")
        entry = ModelEntry(file=EDGETPU_MODEL, **_interface(produced, cpu))
        os.replace(produced, bundle_dir / EDGETPU_MODEL)
        os.replace(log_path, bundle_dir / COMPILE_LOG)
    updated = record_files(bundle_dir, replace(manifest, models={**manifest.models, "edgetpu": entry},
                                               versions={**manifest.versions, "edgetpu_compiler": version}),
                           (EDGETPU_MODEL, COMPILE_LOG))
    if not log.fully_mapped:
        warnings.warn(f"the Edge TPU model is not fully mapped, some ops run on the CPU: {'; '.join(log.reasons)}",
                      EdgeTPUMappingWarning, stacklevel=2)
    return CompileResult(bundle_dir=bundle_dir, model_file=EDGETPU_MODEL, log_file=COMPILE_LOG, compiler=path,
                         compiler_version=version, log=log, manifest=updated, seconds=time.monotonic() - start)


def _interface(compiled: Path, cpu: ModelEntry) -> dict[str, TensorSpec]:
    """The compiled model's int8 input/output; the CPU model's when it needs the delegate to load."""
    from edgekit.host.tflite_inspect import inspect_int8_model

    try:
        info = inspect_int8_model(compiled)
    except EdgekitError:  # an Edge TPU custom op does not resolve without libedgetpu
        return {"input": cpu.input, "output": cpu.output}
    return {"input": info.input, "output": info.output}


def _log_text(run: CompilerRun, own_name: str, own_text: str) -> str:
    parts = [f"$ {' '.join(run.args)}", f"(exit {run.returncode} after {run.seconds:.1f} s)",
             "--- stdout ---", run.stdout.rstrip()]
    if run.stderr.strip():
        parts += ["--- stderr ---", run.stderr.rstrip()]
    if own_text.strip():
        parts += [f"--- {own_name} ---", own_text.rstrip()]
    return "\n".join(parts) + "\n"
