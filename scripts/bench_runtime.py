"""Benchmark the device side of edgekit against SB3 and ONNX Runtime, in one run.

What is measured (one bundle, built from the shipped example unless --bundle is given):

  per-step latency, one observation per call, one thread (torch.set_num_threads(1),
  ONNX Runtime intra_op_num_threads=1, TFLite num_threads=1), on the bundle's held-out
  observations (calibration.npz, key "held_out"), each path warmed up first:
    a. SB3           model.predict(obs, deterministic=True)
    b. ONNX Runtime  float policy.onnx, input "obs" shaped [1, N] float32
    c. raw invoke    EdgePolicy.invoke_int8(q) on pre-quantized inputs
                     (plus a bare interpreter.invoke() loop, for reference only)
    d. EdgePolicy    EdgePolicy.predict(obs) on the CPU int8 model
  the paths are timed round-robin in --rounds slices so that machine noise hits all alike;
  p50/p99/mean in microseconds, timed per call with time.perf_counter.
  in fresh subprocesses:
    - wall time of `import edgekit.runtime` (perf_counter around the import, median of 5)
    - peak RSS of `edgekit run BUNDLE --device cpu --episodes 3`
      (ru_maxrss of RUSAGE_CHILDREN in a wrapper process whose only child is that command)
    - a robot's round trip through the JSON-lines server, one request in flight: write one
      observation line, read the action line, per request (perf_counter); against a bare Python
      JSON-lines echo process (json.loads each line, json.dumps a reply, write, flush) in the same
      run, the two timed round-robin in --rounds slices:
        stdio  `edgekit run BUNDLE --serve stdio --device cpu`  vs the echo on stdin/stdout
        TCP    `edgekit run BUNDLE --serve tcp:127.0.0.1:0 --device cpu`  vs the echo on a TCP
               socket (TCP_NODELAY on both sides, as the server sets it)

Targets:
    EdgePolicy.predict p50 / raw invoke p50      <= 2.0
    SB3 predict p50 / EdgePolicy.predict p50     >= 50
    import edgekit.runtime (median)              <= 0.3 s
    peak RSS of `edgekit run`                    <= 60 MB (MiB, ru_maxrss / 1024)
    serve round trip p50 / echo p50 (stdio, TCP) <= 1.5

Exit code 0 when every target is met, 1 otherwise.

    python scripts/bench_runtime.py [--bundle DIR] [--iterations 5000] [--json out.json]
    python scripts/bench_runtime.py --bundle DIR --serve-only     (the round trips alone)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "ppo-Pendulum-v1.zip"
DEFAULT_ENV = "Pendulum-v1"

TARGET_PREDICT_OVER_INVOKE = 2.0
TARGET_SB3_OVER_PREDICT = 50.0
TARGET_IMPORT_S = 0.3
TARGET_RSS_MB = 60.0
TARGET_SERVE_OVER_ECHO = 1.5

# The baseline a server is compared with: a bare Python JSON-lines echo, on stdin/stdout or one TCP client.
_ECHO_STDIO = (
    "import json, sys\n"
    "out = sys.stdout\n"
    "for line in sys.stdin:\n"
    "    obs = json.loads(line)\n"
    "    out.write(json.dumps({'action': obs[:1]}) + '\\n')\n"
    "    out.flush()\n"
)
_ECHO_TCP = (
    "import json, socket, sys\n"
    "server = socket.create_server(('127.0.0.1', 0))\n"
    "print('listening on tcp:127.0.0.1:%d' % server.getsockname()[1], file=sys.stderr, flush=True)\n"
    "conn, _ = server.accept()\n"
    "conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
    "for line in conn.makefile('rb'):\n"
    "    obs = json.loads(line)\n"
    "    conn.sendall((json.dumps({'action': obs[:1]}) + '\\n').encode())\n"
)

_IMPORT_SNIPPET = (
    "import time\n"
    "t0 = time.perf_counter()\n"
    "import edgekit.runtime\n"
    "print(repr(time.perf_counter() - t0))\n"
)

_RSS_SNIPPET = (
    "import json, resource, subprocess, sys\n"
    "cmd = json.loads(sys.argv[1])\n"
    "proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'returncode': proc.returncode, 'maxrss_kib': usage.ru_maxrss,\n"
    "                  'stdout': proc.stdout, 'stderr': proc.stderr}))\n"
)


# --- helpers -------------------------------------------------------------------------


def summarize(seconds: np.ndarray) -> dict[str, float]:
    """p50 / p99 / mean / min / max of per-call durations, in microseconds."""
    us = np.asarray(seconds, dtype=np.float64) * 1e6
    return {
        "n": int(us.size),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "min_us": float(us.min()),
        "max_us": float(us.max()),
    }


def time_interleaved(paths: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]], warmup: int,
                     rounds: int) -> dict[str, np.ndarray]:
    """Per-call wall time of ``call(x)`` for every input of every path.

    Each path is warmed up with ``warmup`` untimed calls, then the paths are timed
    round-robin in ``rounds`` slices of their inputs, so that a slow spell of the
    machine (other processes, frequency changes) lands on all paths alike instead of
    on whichever ran at that moment. The garbage collector is paused while timing.
    """
    for call, inputs in paths.values():
        for i in range(warmup):
            call(inputs[i % len(inputs)])
    clock = time.perf_counter
    times = {name: np.empty(len(inputs), dtype=np.float64) for name, (_, inputs) in paths.items()}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            gc.collect()
            for name, (call, inputs) in paths.items():
                out = times[name]
                lo, hi = len(inputs) * r // rounds, len(inputs) * (r + 1) // rounds
                for i in range(lo, hi):
                    x = inputs[i]
                    start = clock()
                    call(x)
                    out[i] = clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def edgekit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgekit", *args]


def build_bundle(model: Path, env_id: str, out_dir: Path) -> Path:
    bundle = out_dir / "bundle"
    cmd = edgekit_cmd("build", str(model), "--env", env_id, "-o", str(bundle), "--force", "-q")
    print(f"building bundle: {' '.join(cmd[2:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"edgekit build failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    print(f"  built in {time.perf_counter() - start:.1f} s -> {bundle}", flush=True)
    return bundle


def held_out_observations(bundle: Path, count: int, obs_shape: tuple[int, ...]) -> np.ndarray:
    with np.load(bundle / "calibration.npz", allow_pickle=False) as data:
        held_out = np.asarray(data["held_out"], dtype=np.float32)
    if len(held_out) == 0:
        sys.exit(f"{bundle}/calibration.npz has no held-out observations")
    reps = -(-count // len(held_out))
    return np.tile(held_out, (reps, 1))[:count].reshape(count, *obs_shape)


# --- per-step latency -------------------------------------------------------------------


def bare_invoke_function(interp: Any) -> tuple[Callable[[], None], str]:
    """``interp.invoke``, or the wrapper's ``Invoke`` when the public one refuses to run.

    The public ``invoke()`` raises while anyone holds zero-copy views of the tensors
    (``interpreter.tensor()``), which a runtime may do on purpose for its hot path;
    the wrapper's ``Invoke`` is the same call without that reference-count check.
    """
    try:
        interp.invoke()
        return interp.invoke, "interpreter.invoke()"
    except RuntimeError:
        wrapper = getattr(interp, "_interpreter", None)
        if wrapper is None or not hasattr(wrapper, "Invoke"):
            raise
        return wrapper.Invoke, "interpreter._interpreter.Invoke() (public invoke() refuses held tensor views)"


def bench_latency(bundle: Path, model_path: Path, iterations: int, warmup: int, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from edgekit.host.loading import load_agent
    from edgekit.runtime import EdgePolicy

    torch.set_num_threads(1)
    policy = EdgePolicy.load(bundle, device="cpu", num_threads=1)
    obs = held_out_observations(bundle, iterations, policy.observation_shape)
    flat = obs.reshape(iterations, -1)
    size = flat.shape[1]

    # (d) EdgePolicy.predict on the CPU int8 model
    edge_inputs = list(obs)

    # (c) raw invoke on pre-quantized inputs, and a bare invoke() loop for reference
    quantized = list(policy.quantize_observations(obs))
    interp = policy._interpreter
    interp.set_tensor(interp.get_input_details()[0]["index"], quantized[0].reshape(1, -1))
    bare_invoke, bare_method = bare_invoke_function(interp)

    # (b) ONNX Runtime, float policy.onnx
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(bundle / "policy.onnx"), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    if "obs" not in input_names:
        sys.exit(f"policy.onnx has inputs {input_names}, expected 'obs'")
    # policy.onnx is the conditioned actor: it takes preprocessed (possibly split) inputs
    onnx_inputs = [np.ascontiguousarray(row[None]) for row in policy.manifest.preprocess.model_inputs(flat)]
    run = session.run

    # (a) SB3 model.predict(obs, deterministic=True)
    sb3_model = load_agent(model_path).model

    times = time_interleaved({
        "sb3_predict": (lambda x: sb3_model.predict(x, deterministic=True), edge_inputs),
        "onnxruntime_float": (lambda x: run(None, {"obs": x}), onnx_inputs),
        "raw_invoke_int8": (policy.invoke_int8, quantized),
        "bare_interpreter_invoke": (lambda _x: bare_invoke(), [None] * iterations),
        "edgepolicy_predict": (policy.predict, edge_inputs),
    }, warmup, rounds)

    # sanity: does the int8 policy act like SB3's? (first 500 observations)
    n = min(500, iterations)
    norm = policy.manifest.preprocess.normalize  # SB3's model saw VecNormalize'd observations in training
    seen = [o if norm is None else norm.apply(o.reshape(-1)).reshape(o.shape).astype(np.float32) for o in obs[:n]]
    a_sb3 = np.stack([np.asarray(sb3_model.predict(o, deterministic=True)[0], dtype=np.float64) for o in seen])
    a_edge = np.stack([np.asarray(policy.predict(o), dtype=np.float64) for o in obs[:n]])
    agreement = {
        "n": n,
        "max_abs_edge_vs_sb3": float(np.abs(a_edge.reshape(n, -1) - a_sb3.reshape(n, -1)).max()),
    }

    return {
        "bundle": str(bundle),
        "model": str(model_path),
        "device": policy.device,
        "interpreter": policy.backend.name,
        "algorithm": policy.manifest.algorithm,
        "env_id": policy.manifest.env_id,
        "observation_size": size,
        "iterations": iterations,
        "warmup": warmup,
        "bare_invoke_method": bare_method,
        "rounds": rounds,
        "latency": {name: summarize(t) for name, t in times.items()},
        "agreement": agreement,
    }


# --- fresh-subprocess measurements -------------------------------------------------------


def bench_import(runs: int) -> dict[str, Any]:
    times = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", _IMPORT_SNIPPET], capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            sys.exit(f"`import edgekit.runtime` failed:\n{proc.stderr}")
        times.append(float(proc.stdout.strip().splitlines()[-1]))
    return {"runs_s": times, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def bench_rss(bundle: Path, episodes: int) -> dict[str, Any]:
    cmd = edgekit_cmd("run", str(bundle), "--device", "cpu", "--episodes", str(episodes))
    proc = subprocess.run([sys.executable, "-c", _RSS_SNIPPET, json.dumps(cmd)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"RSS wrapper failed:\n{proc.stderr}")
    result = json.loads(proc.stdout)
    if result["returncode"] != 0:
        sys.exit(f"`{' '.join(cmd)}` failed ({result['returncode']}):\n{result['stdout']}{result['stderr']}")
    kib = int(result["maxrss_kib"])  # Linux reports KiB
    out: dict[str, Any] = {
        "command": " ".join(["edgekit", *cmd[3:]]),
        "method": "getrusage(RUSAGE_CHILDREN).ru_maxrss in a wrapper process",
        "maxrss_kib": kib,
        "maxrss_mib": kib / 1024,
        "maxrss_mb": kib * 1024 / 1e6,
        "summary_line": result["stdout"].strip().splitlines()[-1] if result["stdout"].strip() else "",
    }
    gnu_time = shutil.which("time", path="/usr/bin")
    if gnu_time and platform.system() == "Linux":  # cross-check with GNU time
        proc = subprocess.run([gnu_time, "-v", *cmd], capture_output=True, text=True)
        for line in proc.stderr.splitlines():
            if "Maximum resident set size" in line:
                out["gnu_time_maxrss_kib"] = int(line.rsplit(":", 1)[1])
    return out


# --- serve round trips -----------------------------------------------------------------


class _LineClient:
    """One request in flight: write a line, read until the reply's newline."""

    def __init__(self, send: Callable[[bytes], Any], recv: Callable[[int], bytes]) -> None:
        self.send, self.recv = send, recv

    def round_trip(self, line: bytes) -> float:
        start = time.perf_counter()
        self.send(line)
        reply = self.recv(65536)
        while not reply.endswith(b"\n"):
            more = self.recv(65536)
            if not more:
                raise RuntimeError("the server closed the connection")
            reply += more
        return time.perf_counter() - start


def _stdio_process(cmd: list[str]) -> tuple[subprocess.Popen, _LineClient]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    w, r = proc.stdin.fileno(), proc.stdout.fileno()  # type: ignore[union-attr]
    return proc, _LineClient(lambda data: os.write(w, data), lambda n: os.read(r, n))


def _tcp_process(cmd: list[str]) -> tuple[subprocess.Popen, _LineClient]:
    import socket

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    port = None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if line.startswith("listening on tcp:"):
            port = int(line.strip().rsplit(":", 1)[1])
            break
        if not line and proc.poll() is not None:
            break
    if port is None:
        proc.kill()
        sys.exit(f"`{' '.join(cmd)}` did not start listening")
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    proc._bench_socket = sock  # type: ignore[attr-defined]  # closed with the process
    return proc, _LineClient(sock.sendall, sock.recv)


def bench_serve(bundle: Path, requests: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Round trips through `edgekit run --serve` and through the echo, per transport, interleaved."""
    obs = held_out_observations(bundle, requests, (-1,))
    lines = [(json.dumps([float(v) for v in row]) + "\n").encode() for row in obs]
    serve = edgekit_cmd("run", str(bundle), "--device", "cpu", "--serve")
    out: dict[str, Any] = {"requests": requests, "warmup": warmup, "rounds": rounds,
                           "echo_stdio": _ECHO_STDIO, "echo_tcp": _ECHO_TCP}
    for transport, start, server_cmd, echo_cmd in (
            ("stdio", _stdio_process, [*serve, "stdio"], [sys.executable, "-c", _ECHO_STDIO]),
            ("tcp", _tcp_process, [*serve, "tcp:127.0.0.1:0"], [sys.executable, "-c", _ECHO_TCP])):
        procs = {"edgekit": start(server_cmd), "echo": start(echo_cmd)}
        try:
            times = time_interleaved({name: (client.round_trip, lines) for name, (_, client) in procs.items()},
                                     warmup, rounds)
        finally:
            for proc, _client in procs.values():
                sock = getattr(proc, "_bench_socket", None)
                if sock is not None:
                    sock.close()
                if proc.stdin:
                    proc.stdin.close()
                proc.terminate()
                proc.wait(timeout=30)
        out[transport] = {name: summarize(t) for name, t in times.items()}
        out[transport]["command"] = " ".join(["edgekit", *server_cmd[3:]])
    return out


# --- report --------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    if "latency" in results:
        lat = results["latency"]
        predict_over_invoke = lat["edgepolicy_predict"]["p50_us"] / lat["raw_invoke_int8"]["p50_us"]
        sb3_over_predict = lat["sb3_predict"]["p50_us"] / lat["edgepolicy_predict"]["p50_us"]
        checks += [
            ("EdgePolicy.predict / raw invoke (p50)", predict_over_invoke, "<=", TARGET_PREDICT_OVER_INVOKE, "x"),
            ("SB3 predict / EdgePolicy.predict (p50)", sb3_over_predict, ">=", TARGET_SB3_OVER_PREDICT, "x"),
            ("import edgekit.runtime (median of runs)", results["import"]["median_s"], "<=", TARGET_IMPORT_S, "s"),
            ("peak RSS of `edgekit run` (MiB)", results["rss"]["maxrss_mib"], "<=", TARGET_RSS_MB, "MiB"),
        ]
    for transport in ("stdio", "tcp"):
        trips = results["serve"][transport]
        ratio = trips["edgekit"]["p50_us"] / trips["echo"]["p50_us"]
        checks.append((f"serve {transport} round trip / echo (p50)", ratio, "<=", TARGET_SERVE_OVER_ECHO, "x"))
    out = []
    for name, value, op, target, unit in checks:
        ok = value <= target if op == "<=" else value >= target
        out.append({"name": name, "value": value, "op": op, "target": target, "unit": unit, "pass": ok})
    return out


def print_serve(serve: dict[str, Any]) -> None:
    print(f"serve round trips: {serve['requests']} requests per process after {serve['warmup']} warm-up, "
          f"one in flight, edgekit and echo interleaved in {serve['rounds']} rounds")
    print(f"{'transport':10s} {'process':9s} {'p50 us':>10s} {'p99 us':>10s} {'mean us':>10s}  command")
    for transport in ("stdio", "tcp"):
        for name in ("edgekit", "echo"):
            s = serve[transport][name]
            what = serve[transport]["command"] if name == "edgekit" else "bare Python JSON-lines echo"
            print(f"{transport:10s} {name:9s} {s['p50_us']:10.1f} {s['p99_us']:10.1f} {s['mean_us']:10.1f}  {what}")


def print_checks(results: dict[str, Any]) -> None:
    print(f"{'target':42s} {'measured':>12s} {'target':>12s}  result")
    for c in results["checks"]:
        value = f"{c['value']:.3f} {c['unit']}" if c["unit"] == "s" else f"{c['value']:.2f} {c['unit']}"
        target = f"{c['op']} {c['target']:g} {c['unit']}"
        print(f"{c['name']:42s} {value:>12s} {target:>12s}  {verdict(c['pass'])}")
    passed = sum(c["pass"] for c in results["checks"])
    print(f"\n{passed}/{len(results['checks'])} targets met")


def print_report(results: dict[str, Any]) -> None:
    lat = results["latency"]
    print()
    print(f"bundle {results['bundle']}  ({results['algorithm']} {results['env_id']}, obs size "
          f"{results['observation_size']}, {results['interpreter']} on {results['device']}, 1 thread)")
    print(f"{results['iterations']} timed calls per path after {results['warmup']} warm-up calls, "
          f"one observation per call, paths interleaved in {results['rounds']} rounds")
    print()
    labels = {
        "sb3_predict": "(a) SB3 model.predict",
        "onnxruntime_float": "(b) ONNX Runtime float",
        "raw_invoke_int8": "(c) raw invoke_int8(q)",
        "bare_interpreter_invoke": "    bare interpreter.invoke()",
        "edgepolicy_predict": "(d) EdgePolicy.predict",
    }
    print(f"{'path':32s} {'p50 us':>10s} {'p99 us':>10s} {'mean us':>10s} {'x EdgePolicy':>13s}")
    edge_p50 = lat["edgepolicy_predict"]["p50_us"]
    for key, label in labels.items():
        s = lat[key]
        print(f"{label:32s} {s['p50_us']:10.1f} {s['p99_us']:10.1f} {s['mean_us']:10.1f} "
              f"{s['p50_us'] / edge_p50:13.2f}")
    print()
    imp = results["import"]
    print(f"import edgekit.runtime: {', '.join(f'{t:.3f}' for t in imp['runs_s'])} s "
          f"(median {imp['median_s']:.3f} s)")
    rss = results["rss"]
    extra = f"; GNU time {rss['gnu_time_maxrss_kib'] / 1024:.1f} MiB" if "gnu_time_maxrss_kib" in rss else ""
    print(f"peak RSS of `{rss['command']}`: {rss['maxrss_mib']:.1f} MiB ({rss['maxrss_mb']:.1f} MB){extra}")
    if rss["summary_line"]:
        print(f"  {rss['summary_line']}")
    agree = results["agreement"]
    print(f"bare invoke loop used {results['bare_invoke_method']}")
    print(f"sanity: max |EdgePolicy - SB3| action over {agree['n']} obs = {agree['max_abs_edge_vs_sb3']:.4f}")
    print()
    print_serve(results["serve"])
    print()
    mib, mb = rss["maxrss_mib"], rss["maxrss_mb"]
    if (mib <= TARGET_RSS_MB) != (mb <= TARGET_RSS_MB):
        print(f"note: the RSS verdict depends on the unit: {mib:.1f} MiB vs {mb:.1f} MB (10^6 bytes); "
              "judged in MiB")
    print_checks(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None,
                        help="existing bundle directory (default: build one from --model into a temp dir)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="SB3 model.zip for the SB3 baseline and the build "
                        f"(default: {DEFAULT_MODEL.relative_to(REPO)})")
    parser.add_argument("--env", dest="env_id", default=DEFAULT_ENV,
                        help=f"Gymnasium id used to build the bundle (default: {DEFAULT_ENV})")
    parser.add_argument("--iterations", type=int, default=5000, help="timed calls per path (default: 5000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed warm-up calls per path (default: 200)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="the paths are timed round-robin in this many slices (default: 10)")
    parser.add_argument("--import-runs", type=int, default=5,
                        help="fresh subprocesses timing `import edgekit.runtime` (default: 5)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes for the `edgekit run` RSS check (default: 3)")
    parser.add_argument("--serve-requests", type=int, default=5000,
                        help="round trips per server process (default: 5000)")
    parser.add_argument("--serve-only", action="store_true",
                        help="measure the serve round trips only (needs --bundle; no SB3, ONNX Runtime, import, RSS)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every number as JSON to PATH")
    args = parser.parse_args(argv)
    if args.serve_only:
        if args.bundle is None:
            parser.error("--serve-only needs --bundle")
        results = {"bundle": str(args.bundle), "serve": bench_serve(args.bundle, args.serve_requests, args.warmup,
                                                                     args.rounds)}
        results["checks"] = evaluate(results)
        print_serve(results["serve"])
        print()
        print_checks(results)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0 if all(c["pass"] for c in results["checks"]) else 1
    if min(args.iterations, args.rounds, args.import_runs, args.episodes) < 1 or args.warmup < 0:
        parser.error("--iterations, --rounds, --import-runs and --episodes must be >= 1, --warmup >= 0")
    args.rounds = min(args.rounds, args.iterations)
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")

    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if load_at_start and load_at_start[0] >= 0.5:
        print(f"warning: load average {load_at_start[0]:.2f} at start: other processes may skew the timings")
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        bundle = args.bundle or build_bundle(args.model, args.env_id, Path(tmp))
        if not (bundle / "manifest.json").is_file():
            parser.error(f"not a bundle (no manifest.json): {bundle}")
        # The subprocess measurements run first, before this process loads torch and friends.
        print(f"timing `import edgekit.runtime` in {args.import_runs} fresh subprocesses ...", flush=True)
        imported = bench_import(args.import_runs)
        print(f"measuring peak RSS of `edgekit run --device cpu --episodes {args.episodes}` ...", flush=True)
        rss = bench_rss(bundle, args.episodes)
        print(f"timing serve round trips ({args.serve_requests} per process) ...", flush=True)
        serve = bench_serve(bundle, args.serve_requests, args.warmup, args.rounds)
        print(f"timing per-step latency ({args.iterations} calls per path) ...", flush=True)
        results = bench_latency(bundle, args.model, args.iterations, args.warmup, args.rounds)
        results["serve"] = serve
        results["import"] = imported
        results["rss"] = rss
        results["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                              "cpus": os.cpu_count(), "loadavg_at_start": load_at_start}
        if args.bundle is None:
            results["bundle"] += " (temporary, deleted)"
    results["checks"] = evaluate(results)
    print_report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(c["pass"] for c in results["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
