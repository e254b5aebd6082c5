"""Running Google's edgetpu_compiler and recording its result in a bundle.

This machine has no edgetpu_compiler and it cannot be installed here, so:

- the real compiler is exercised only by the test marked ``compiler``, which skips
  when ``edgetpu_compiler`` is not on PATH;
- the log parser is tested on text WRITTEN HERE IN THE REAL FORMAT: the label lines
  of Coral's documentation and the lines compiler 14-16 print in public bug reports
  (google-coral/edgetpu #358, #490, #829, #903; each fixture names where its lines come
  from, quoting single lines only), not on a captured compiler run;
- the subprocess plumbing (timeout, non-zero exit, missing compiler, log capture,
  manifest bookkeeping) is tested with STAND-IN executables written into tmp_path.
  A stand-in compiles nothing: it prints documented-format text, sleeps, fails or
  copies its input file unchanged, so that edgekit's own code around the compiler
  can be tested. Nothing here shows that any model compiles for the Edge TPU.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_cli

from edgekit.bundle.files import verify_all
from edgekit.bundle.layout import sha256_file
from edgekit.bundle.manifest import Manifest
from edgekit.core.errors import CompilerError, UsageError
from edgekit.edgetpu import EdgeTPUMappingWarning
from edgekit.edgetpu.bundle_compile import COMPILE_LOG, EDGETPU_MODEL, compile_bundle
from edgekit.edgetpu.compiler import (
    CompilerMissingError,
    compile_model,
    compiler_version,
    find_compiler,
)
from edgekit.edgetpu.log import parse_compile_log, parse_size

# -- log parser, on text written from the documented format ---------------------------------------

COMPILER_16 = "16.0.384591198"  # the version line of the last compiler release (16.0)
COMPILER_15 = "15.0.340273435"

# Written by hand in compiler 16's format (label lines from Coral's docs, the timer line from public
# compiler-16 reports); not a captured compiler log.
DOCUMENTED_FULL = f"""\
Edge TPU Compiler version {COMPILER_16}
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 12 ms.

Input model: model_int8.tflite
Input size: 7.25KiB
Output model: model_int8_edgetpu.tflite
Output size: 40.10KiB
On-chip memory used for caching model parameters: 5.00KiB
On-chip memory remaining for caching model parameters: 7.95MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 5
Operation log: model_int8_edgetpu.log

Operator                       Count      Status

FULLY_CONNECTED                3          Mapped to Edge TPU
TANH                           2          Mapped to Edge TPU
"""

UNSPECIFIED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"

# Written by hand from the documented label lines and statuses; not a captured compiler log.
DOCUMENTED_PARTIAL = f"""\
Edge TPU Compiler version {COMPILER_16}
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 20 ms.

On-chip memory used for caching model parameters: 1.50MiB
On-chip memory remaining for caching model parameters: 6.25MiB
Off-chip memory used for streaming uncached model parameters: 512.00KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 6
Operation log: model_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model \
will instead run on the CPU, which is slower.
Number of operations that will run on Edge TPU: 4
Number of operations that will run on CPU: 2
See the operation log file for individual operation details.

Operator                       Count      Status

FULLY_CONNECTED                2          Mapped to Edge TPU
TANH                           2          Mapped to Edge TPU
EXP                            1          {UNSPECIFIED}
FULLY_CONNECTED                1          Filter, bias, or other param is not constant at compile-time
"""

# Written by hand from the documented failure lines; not a captured compiler log.
DOCUMENTED_INVALID = f"""\
Edge TPU Compiler version {COMPILER_16}
Invalid model: model_int8.tflite
Model not quantized
"""

# Compiler 16's failure endings, written by hand in the format of public reports (single lines as
# quoted there; none of these is a captured log). Each maps to the error edgekit must report.
FAILED_IN_INTERPRETER = f"""\
Edge TPU Compiler version {COMPILER_16}
Started a compilation timeout timer of 180 seconds.
ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph that has dynamic-sized tensors.
Compilation failed: Model failed in Tflite interpreter. Please ensure model can be loaded/run in Tflite interpreter.
Compilation child process completed within timeout period.
Compilation failed! 
"""  # the lines of google-coral/edgetpu#829
FAILED_WITHOUT_REASON = f"""\
Edge TPU Compiler version {COMPILER_16}
Started a compilation timeout timer of 180 seconds.
Compilation child process completed within timeout period.
Compilation failed! 
"""  # the ending of google-coral/edgetpu#800 and #903
FAILED_ON_ITS_OWN_TIMER = f"""\
Edge TPU Compiler version {COMPILER_16}
Started a compilation timeout timer of 30 seconds.
Compilation timeout. This is usually caused by large activations.
Compilation failed! 
"""  # the compiler's own timer firing (google-coral/edgetpu#686)
FAILED_UNCAUGHT_EXCEPTION = f"""\
Edge TPU Compiler version {COMPILER_16}
Started a compilation timeout timer of 180 seconds.
libc++abi: terminating with uncaught exception of type std::out_of_range: vector
Compilation child process completed within timeout period.
Compilation failed! 
"""  # google-coral/edgetpu#728
INTERNAL_ERROR = f"""\
Edge TPU Compiler version {COMPILER_15}

Internal compiler error. Aborting! 
"""  # compilers 14-15 (google-coral/edgetpu#189, #378)
NOT_PARSED = f"""\
Edge TPU Compiler version {COMPILER_16}
Model could not be parsed
"""
# A partial-mapping search: failed attempts on larger segments, then a compiled model (google-coral/edgetpu#903
# shows the search lines). The run succeeded, so its "Compilation failed!" lines are not the run's error.
SEARCH_THEN_SUCCESS = f"""\
Edge TPU Compiler version {COMPILER_16}
Searching for valid delegate with step 1
Try to compile segment with 5 ops
Started a compilation timeout timer of 180 seconds.
Compilation child process completed within timeout period.
Compilation failed! 
Try to compile segment with 4 ops
Intermediate tensors: model/dense_1/MatMul
Started a compilation timeout timer of 180 seconds.
Compilation child process completed within timeout period.
""" + DOCUMENTED_PARTIAL.split("\n", 2)[2]


def test_parse_fully_mapped_log():
    log = parse_compile_log(DOCUMENTED_FULL)
    assert log.compiler_version == COMPILER_16
    assert log.compile_ms == 12.0
    assert (log.ops_total, log.subgraphs) == (5, 1)
    assert log.on_chip_used_bytes == 5 * 1024
    assert log.on_chip_remaining_bytes == round(7.95 * 1024**2)
    assert log.off_chip_bytes == 0
    assert [(o.operator, o.count, o.status) for o in log.ops] == [
        ("FULLY_CONNECTED", 3, "Mapped to Edge TPU"), ("TANH", 2, "Mapped to Edge TPU")]
    assert log.cpu_op_count == 0
    assert log.fully_mapped and log.reasons == ()
    assert log.error is None


def test_parse_partially_mapped_log():
    log = parse_compile_log(DOCUMENTED_PARTIAL)
    assert (log.ops_total, log.ops_on_tpu, log.ops_on_cpu) == (6, 4, 2)
    assert log.off_chip_bytes == 512 * 1024
    assert not log.fully_mapped
    assert log.reasons == (
        f"EXP x1: {UNSPECIFIED}",
        "FULLY_CONNECTED x1: Filter, bias, or other param is not constant at compile-time",
    )
    assert log.to_dict()["ops_on_cpu"] == 2


def test_parse_invalid_model_log():
    log = parse_compile_log(DOCUMENTED_INVALID)
    assert log.error == "Invalid model: model_int8.tflite Model not quantized"
    assert not log.fully_mapped
    assert log.reasons[0].startswith("Invalid model")


@pytest.mark.parametrize("text,expected", [
    (FAILED_IN_INTERPRETER, "ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph "
     "that has dynamic-sized tensors. Compilation failed: Model failed in Tflite interpreter. Please ensure model can "
     "be loaded/run in Tflite interpreter. Compilation failed!"),
    (FAILED_WITHOUT_REASON, "Compilation failed!"),
    (FAILED_ON_ITS_OWN_TIMER, "Compilation timeout. This is usually caused by large activations. Compilation failed!"),
    (FAILED_UNCAUGHT_EXCEPTION, "libc++abi: terminating with uncaught exception of type std::out_of_range: vector "
     "Compilation failed!"),
    (INTERNAL_ERROR, "Internal compiler error. Aborting!"),
    (NOT_PARSED, "Model could not be parsed"),
])
def test_parse_recognises_the_failure_lines_as_the_error(text, expected):
    log = parse_compile_log(text)
    assert log.error == expected
    assert not log.fully_mapped and log.reasons[0] == expected


def test_parse_reads_the_compilers_own_timer():
    assert parse_compile_log(FAILED_ON_ITS_OWN_TIMER).compiler_timeout_s == 30
    assert parse_compile_log(DOCUMENTED_FULL).compiler_timeout_s == 180
    assert parse_compile_log(INTERNAL_ERROR).compiler_timeout_s is None  # compiler 15 has no such timer


def test_failed_attempts_of_a_run_that_compiled_are_not_its_error():
    log = parse_compile_log(SEARCH_THEN_SUCCESS)
    assert log.error is None and log.compile_ms == 20.0
    assert (log.ops_on_tpu, log.ops_on_cpu) == (4, 2)


def test_parse_reads_only_the_first_table_and_ignores_unknown_lines():
    text = DOCUMENTED_FULL + "\nsome line a newer compiler might add: 42\n" + DOCUMENTED_FULL
    log = parse_compile_log(text)
    assert sum(o.count for o in log.ops) == 5
    assert log.fully_mapped


def test_parse_empty_text_claims_nothing():
    log = parse_compile_log("")
    assert log.compiler_version is None and log.ops == () and log.cpu_op_count is None
    assert not log.fully_mapped
    assert log.reasons  # says that it does not know


@pytest.mark.parametrize("text,expected", [("0.00B", 0), ("21.75KiB", 22272), ("7.45MiB", round(7.45 * 1024**2)),
                                           ("1GiB", 1024**3), ("12 B", 12), ("lots", None)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


# -- stand-in executables for the subprocess plumbing ---------------------------------------------

_STANDIN_HEAD = """\
#!{python}
# STAND-IN for edgetpu_compiler, written by edgekit's tests. It compiles nothing: it prints what the
# real compiler {version} prints first (its version line; from 16 on, its own timer, set by -t) and
# then does what the test asks.
import os, shutil, sys, time
args = sys.argv[1:]
if args == ["--version"]:
    print("Edge TPU Compiler version {version}")
    sys.exit(0)
out_dir = args[args.index("-o") + 1]
model = args[-1]
stem = os.path.splitext(os.path.basename(model))[0]
if {timer}:
    timer = args[args.index("-t") + 1] if "-t" in args else "180"
    print("Started a compilation timeout timer of %s seconds." % timer, flush=True)
elif "-t" in args:
    print("edgetpu_compiler: unknown option -t", file=sys.stderr)  # compilers before 16 have no -t
    sys.exit(2)
"""


def _standin(tmp_path: Path, body: str, name: str = "standin-edgetpu_compiler", version: str = COMPILER_16) -> Path:
    path = tmp_path / name
    head = _STANDIN_HEAD.format(python=sys.executable, version=version, timer=int(version.split(".")[0]) >= 16)
    path.write_text(head + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def _copying_standin(tmp_path: Path, log_text: str) -> Path:
    """Copies its input unchanged to the output name and prints ``log_text``: bookkeeping only."""
    return _standin(tmp_path, f"""
        shutil.copyfile(model, os.path.join(out_dir, stem + "_edgetpu.tflite"))
        with open(os.path.join(out_dir, stem + "_edgetpu.log"), "w") as fh:
            fh.write("(stand-in log file)\\n")
        sys.stdout.write({log_text!r})
        """)


@pytest.fixture()
def bundle_copy(built_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, copy)
    return copy


def _snapshot(bundle: Path) -> dict[str, bytes]:
    return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def test_missing_compiler_is_an_error_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompilerMissingError) as info:
        find_compiler()
    assert isinstance(info.value, CompilerError)
    for needle in ("edgetpu-compiler", "apt", "x86-64", "edgekit compile"):
        assert needle in info.value.hint
    with pytest.raises(CompilerMissingError):
        find_compiler(tmp_path / "no" / "edgetpu_compiler")


def test_missing_compiler_leaves_the_bundle_unchanged(bundle_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    before = _snapshot(bundle_copy)
    with pytest.raises(CompilerMissingError):
        compile_bundle(bundle_copy)
    assert _snapshot(bundle_copy) == before


def test_version_of_a_standin(tmp_path):
    standin = _standin(tmp_path, "sys.exit(0)\n")
    assert find_compiler(standin) == str(standin.resolve())
    assert compiler_version(str(standin)) == COMPILER_16


def test_not_a_compiler_is_refused(tmp_path):
    standin = tmp_path / "standin-not-a-compiler"
    standin.write_text(f"#!{sys.executable}\nprint('hello')\n")
    standin.chmod(0o755)
    with pytest.raises(CompilerError, match="did not report an Edge TPU compiler version"):
        compiler_version(str(standin))


def test_timeout_stops_the_standin_and_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    standin = _standin(tmp_path, f"""
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(60)
        """)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    start = time.monotonic()
    with pytest.raises(CompilerError, match="did not finish within 2 s") as info:
        compile_model(str(standin), model, tmp_path, timeout=2)
    assert time.monotonic() - start < 30
    assert "--timeout" in info.value.hint
    assert pid_file.exists()
    _assert_gone(int(pid_file.read_text()))


def _assert_gone(pid: int) -> None:
    """The grandchild was killed with its process group (a zombie awaiting its reaper counts as gone)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.1)
    pytest.fail(f"process {pid} started by the stand-in survived the timeout")


def test_nonzero_exit_is_one_line_error_and_the_bundle_is_unchanged(bundle_copy, tmp_path):
    standin = _standin(tmp_path, f"""
        sys.stdout.write({DOCUMENTED_INVALID!r})
        sys.exit(1)
        """)
    before = _snapshot(bundle_copy)
    with pytest.raises(CompilerError) as info:
        compile_bundle(bundle_copy, compiler=str(standin))
    message = str(info.value)
    assert "exit 1" in message and "Model not quantized" in message and "\n" not in message
    assert "edgekit check" in info.value.hint
    assert _snapshot(bundle_copy) == before


def test_exit_zero_without_output_file_is_an_error(bundle_copy, tmp_path):
    standin = _standin(tmp_path, "print('nothing written')\n")
    before = _snapshot(bundle_copy)
    with pytest.raises(CompilerError, match="wrote no model_int8_edgetpu.tflite"):
        compile_bundle(bundle_copy, compiler=str(standin))
    assert _snapshot(bundle_copy) == before


def test_min_runtime_is_passed_and_checked(bundle_copy, tmp_path):
    args_file = tmp_path / "args.json"
    standin = _standin(tmp_path, f"""
        import json
        json.dump(args, open({str(args_file)!r}, "w"))
        sys.exit(3)
        """)
    with pytest.raises(CompilerError, match="exit 3"):
        compile_bundle(bundle_copy, compiler=str(standin), min_runtime=13)
    args = json.loads(args_file.read_text())
    assert args[:1] == ["-s"] and args[args.index("-m") + 1] == "13"
    assert args[-1] == str((bundle_copy / "model_int8.tflite").resolve())
    with pytest.raises(UsageError):
        compile_bundle(bundle_copy, compiler=str(standin), min_runtime=0)


def _recording_standin(tmp_path: Path, args_file: Path, version: str = COMPILER_16, exit_code: int = 3) -> Path:
    return _standin(tmp_path, f"""
        import json
        json.dump(args, open({str(args_file)!r}, "w"))
        sys.exit({exit_code})
        """, version=version)


def test_the_timeout_is_passed_to_compiler_16_as_its_own_timer(tmp_path):
    """Compiler 16 stops itself after -t seconds (180 by default): --timeout must set that timer too."""
    args_file = tmp_path / "args.json"
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(CompilerError):
        compile_model(str(_recording_standin(tmp_path, args_file)), model, tmp_path, timeout=600, version=COMPILER_16)
    args = json.loads(args_file.read_text())
    assert args[args.index("-t") + 1] == "600"
    with pytest.raises(CompilerError):
        compile_model(str(_recording_standin(tmp_path, args_file)), model, tmp_path, timeout=12.2,
                      version=COMPILER_16)
    assert json.loads(args_file.read_text())[json.loads(args_file.read_text()).index("-t") + 1] == "13"


def test_compiler_15_gets_no_timer_option(tmp_path):
    args_file = tmp_path / "args.json"
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(CompilerError, match="exit 3"):
        compile_model(str(_recording_standin(tmp_path, args_file, version=COMPILER_15)), model, tmp_path,
                      timeout=600, version=COMPILER_15)
    assert "-t" not in json.loads(args_file.read_text())


def test_compile_bundle_passes_its_timeout_to_the_compiler(bundle_copy, tmp_path):
    args_file = tmp_path / "args.json"
    with pytest.raises(CompilerError, match="exit 3"):
        compile_bundle(bundle_copy, compiler=str(_recording_standin(tmp_path, args_file)), timeout=240)
    args = json.loads(args_file.read_text())
    assert args[args.index("-t") + 1] == "240"


@pytest.mark.parametrize("text,needle", [
    (FAILED_IN_INTERPRETER, "Compilation failed: Model failed in Tflite interpreter"),
    (FAILED_WITHOUT_REASON, "Compilation failed!"),
    (INTERNAL_ERROR, "Internal compiler error. Aborting!"),
    (NOT_PARSED, "Model could not be parsed"),
])
def test_a_failed_compile_names_the_compilers_failure_line(bundle_copy, tmp_path, text, needle):
    """The compiler's own failure line is the message, not the last lines of its output."""
    version = text.split("\n", 1)[0].rsplit(" ", 1)[1]
    body = "".join(line for line in text.splitlines(keepends=True)[1:] if "compilation timeout timer" not in line)
    standin = _standin(tmp_path, f"""
        sys.stdout.write({body!r})
        sys.exit(1)
        """, version=version)  # the stand-in prints the version and timer lines itself
    with pytest.raises(CompilerError) as info:
        compile_bundle(bundle_copy, compiler=str(standin))
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "child process completed" not in message  # progress lines are not the error


def test_exit_zero_without_a_model_reports_the_failure_line(bundle_copy, tmp_path):
    """Some failing runs exit 0 and write nothing (google-coral/edgetpu#903): say why, not only that."""
    standin = _standin(tmp_path, f"""
        sys.stdout.write({FAILED_WITHOUT_REASON.split(chr(10), 2)[2]!r})
        """)
    with pytest.raises(CompilerError, match="wrote no model_int8_edgetpu.tflite.*Compilation failed!"):
        compile_bundle(bundle_copy, compiler=str(standin))


def test_bookkeeping_after_a_successful_run(bundle_copy, tmp_path):
    """A copying stand-in: checks edgekit's manifest update, not any compilation."""
    standin = _copying_standin(tmp_path, DOCUMENTED_FULL)
    old = Manifest.read(bundle_copy)
    result = compile_bundle(bundle_copy, compiler=str(standin))
    manifest = Manifest.read(bundle_copy)
    assert result.manifest == manifest
    assert result.fully_mapped and result.compiler_version == COMPILER_16
    assert manifest.versions["edgetpu_compiler"] == COMPILER_16
    edgetpu = manifest.models["edgetpu"]
    assert edgetpu.file == EDGETPU_MODEL
    assert (edgetpu.input, edgetpu.output) == (old.models["cpu"].input, old.models["cpu"].output)
    assert manifest.files[EDGETPU_MODEL] == sha256_file(bundle_copy / EDGETPU_MODEL)
    assert manifest.files[COMPILE_LOG] == sha256_file(bundle_copy / COMPILE_LOG)
    assert {k: v for k, v in manifest.files.items() if k not in (EDGETPU_MODEL, COMPILE_LOG)} == old.files
    assert set(verify_all(bundle_copy, manifest)) == set(old.files) | {EDGETPU_MODEL, COMPILE_LOG}
    log = (bundle_copy / COMPILE_LOG).read_text()
    assert "Mapped to Edge TPU" in log and "(stand-in log file)" in log and "-s -t 180 -o" in log
    assert sorted(p.name for p in bundle_copy.iterdir() if p.name.startswith(".")) == []  # no temp files left
    assert result.to_dict()["fully_mapped"] is True


def test_partial_mapping_warns_with_the_reasons(bundle_copy, tmp_path):
    standin = _copying_standin(tmp_path, DOCUMENTED_PARTIAL)
    with pytest.warns(EdgeTPUMappingWarning, match="EXP x1: Operation is otherwise supported"):
        result = compile_bundle(bundle_copy, compiler=str(standin))
    assert not result.fully_mapped
    assert "edgetpu" in Manifest.read(bundle_copy).models


def test_require_full_tpu_refuses_a_partial_mapping(bundle_copy, tmp_path):
    standin = _copying_standin(tmp_path, DOCUMENTED_PARTIAL)
    before = _snapshot(bundle_copy)
    with pytest.raises(CompilerError, match="not fully mapped") as info:
        compile_bundle(bundle_copy, compiler=str(standin), require_full_tpu=True)
    assert "Filter, bias, or other param is not constant" in str(info.value)
    assert _snapshot(bundle_copy) == before


def test_cli_compile_without_compiler(bundle_copy, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    proc = run_cli("compile", str(bundle_copy), env={"PATH": str(empty)})
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "edgetpu_compiler is not installed" in errors[0], proc.stderr
    assert "  fix: " in proc.stderr and "edgetpu-compiler" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_compile_with_a_standin_prints_the_table(bundle_copy, tmp_path):
    standin = _copying_standin(tmp_path, DOCUMENTED_PARTIAL)
    proc = run_cli("compile", str(bundle_copy), "--compiler", str(standin), "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    assert "ops on the Edge TPU: 4 of 6, on the CPU: 2" in proc.stdout
    assert "warning: the Edge TPU model is not fully mapped" in proc.stderr


# -- the real compiler ----------------------------------------------------------------------------


@pytest.mark.compiler
@pytest.mark.skipif(shutil.which("edgetpu_compiler") is None, reason="edgetpu_compiler is not on PATH")
def test_real_compiler_maps_the_whole_policy(bundle_copy):
    from edgekit.edgetpu.check import check_path

    predicted = check_path(bundle_copy)
    result = compile_bundle(bundle_copy, timeout=600, require_full_tpu=True)
    assert result.fully_mapped, result.log.reasons
    assert result.log.compiler_version and result.log.subgraphs == 1
    assert result.log.ops_total in (None, len(predicted.ops))
    manifest = Manifest.read(bundle_copy)
    verify_all(bundle_copy, manifest)
    assert manifest.models["edgetpu"].file == EDGETPU_MODEL
    assert manifest.versions["edgetpu_compiler"] == result.compiler_version
    assert os.path.getsize(bundle_copy / EDGETPU_MODEL) > 0
