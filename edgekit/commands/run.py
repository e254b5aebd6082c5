"""``edgekit run BUNDLE``: the policy on the device, in its env or as a control-loop server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.commands.arg_types import seed
from edgekit.commands.env_options import add_env_arguments, given_env
from edgekit.core.errors import UsageError

if TYPE_CHECKING:
    from edgekit.core.env_spec import EnvSpec
    from edgekit.runtime import EdgePolicy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a bundle: episodes in its Gymnasium env, or a JSON-lines server",
        description="Load a bundle with numpy and a TFLite interpreter only and run it on an Edge TPU (or the "
        "CPU). With --env, play episodes and print returns and predict latency; with --serve, answer one "
        "JSON observation per line with one JSON action per line.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory written by `edgekit build`")
    p.add_argument("--device", default="auto", help="auto (default), cpu, usb, usb:N, pci or pci:N")
    p.add_argument("--interpreter", default=None, choices=("ai_edge_litert", "tflite_runtime", "tensorflow"),
                   help="force one TFLite interpreter package (default: the first installed)")
    add_env_arguments(p, "play episodes in this env: a Gymnasium id, module:Id or module:EnvClass (default, or "
                      "--env alone: the bundle's env; one that needs a module imported must be named); needs "
                      "gymnasium", optional_value=True)
    p.add_argument("--serve", metavar="ADDRESS",
                   help="stdio, tcp:PORT, tcp:HOST:PORT or tcp:[IPV6]:PORT (host defaults to 127.0.0.1; 0.0.0.0 "
                   "or [::] listen on every interface); not with --env")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="with --serve tcp:..., disconnect a client that completes no request for this long "
                   "(default: 60; 0: never)")
    p.add_argument("--episodes", type=int, default=5, help="episodes to play with --env (default: 5)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the first episode (default: 0)")
    p.add_argument("--render", action="store_true", help="render the env on screen (needs a display)")
    p.add_argument("--on-bad-obs", choices=("error", "hold", "zero"), default=None,
                   help="with --serve, answer a bad observation line with an error (default), the last good "
                   "action (hold) or the neutral action: the Box centre, Discrete action 0, MultiDiscrete / "
                   "MultiBinary zeros (zero); counted")
    p.add_argument("--count-saturation", action="store_true",
                   help="with --serve, count observations with features outside the int8 input range (far "
                   "outside the calibration range) and mark their responses with \"saturated\": N")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgekit.runtime import EdgePolicy

    if args.serve is not None and (args.env_id is not None or args.env_module or args.env_kwargs):
        raise UsageError("--serve and --env are exclusive: a server answers observations, it plays no env")
    if args.episodes < 1:
        raise UsageError("--episodes must be at least 1")
    if args.serve is None and (args.on_bad_obs is not None or args.count_saturation):
        raise UsageError("--on-bad-obs and --count-saturation apply to --serve only")
    if args.idle_timeout is not None and (args.serve is None or args.serve == "stdio"):
        raise UsageError("--idle-timeout applies to --serve tcp:... only")
    if args.idle_timeout is not None and not 0 <= args.idle_timeout < 1e9:
        raise UsageError(f"--idle-timeout {args.idle_timeout} is not a number of seconds >= 0")
    if args.serve is not None and args.serve != "stdio":
        from edgekit.runtime.serve import parse_tcp_address

        parse_tcp_address(args.serve)  # a bad address is an error before the bundle is opened
    policy = EdgePolicy.load(args.bundle, device=args.device, interpreter=args.interpreter)
    print(f"{policy!r}", file=sys.stderr)
    if args.serve is not None:
        return _serve(policy, args)
    return _episodes(policy, given_env(args).apply(policy.manifest.environment), args)


def _serve(policy: EdgePolicy, args: argparse.Namespace) -> int:
    from edgekit.runtime import serve

    guard = serve.BadObsGuard.for_space(policy.manifest.action_space, args.on_bad_obs or "error",
                                        args.count_saturation)
    if args.serve == "stdio":
        sys.stdout.flush()  # replies go straight to the file descriptor from here on
        answered = serve.serve_stdio(policy, guard)
        print(f"answered {answered} requests; {guard.summary()}{_fallback_note(policy, 'requests')}",
              file=sys.stderr)
        return 0
    host, port = serve.parse_tcp_address(args.serve)
    idle = serve.IDLE_TIMEOUT_S if args.idle_timeout is None else args.idle_timeout
    server = serve.TCPServer(policy, host, port, guard, idle_timeout=idle)
    server.install_signal_handlers()
    print(f"listening on {serve.format_address(*server.address)}", file=sys.stderr, flush=True)
    answered = server.serve_forever()
    print(f"stopped after {answered} requests; {guard.summary()}{_fallback_note(policy, 'requests')}",
          file=sys.stderr)
    return 0


def _fallback_note(policy: EdgePolicy, what: str) -> str:
    """What the shutdown summary says when the Edge TPU failed mid-run."""
    if policy.tpu_failure is None:
        return ""
    return f"; {policy.tpu_failure}: {policy.fallback_predictions} {what} answered on the CPU int8 model since"


def _episodes(policy: EdgePolicy, spec: EnvSpec, args: argparse.Namespace) -> int:
    from edgekit.host.gym_envs import check_env_fits, make_env
    from edgekit.runtime.episodes import EpisodeResult, run_episodes, summarize

    env_id = spec.id
    env = make_env(spec, render_mode="human" if args.render else None)
    manifest = policy.manifest
    check_env_fits(env_id, env, manifest.observation_space, manifest.action_space)

    def show(r: EpisodeResult) -> None:
        print(f"episode {r.index + 1:3d}  seed {r.seed:<6d} return {r.episode_return:10.2f}  steps {r.length:5d}  "
              f"predict p50 {r.latency['p50_us']:7.1f} us  p99 {r.latency['p99_us']:7.1f} us", flush=True)

    try:
        results = run_episodes(policy, env, args.episodes, args.seed, on_episode=show)
    finally:
        env.close()
    s = summarize(results)
    lat = s["latency"]
    print(f"{env_id}: mean return {s['mean_return']:.2f} ± {s['std_return']:.2f} over {s['episodes']} episodes; "
          f"predict p50 {lat['p50_us']:.1f} us, p99 {lat['p99_us']:.1f} us on {policy.device}")
    if policy.tpu_failure is not None:
        print(_fallback_note(policy, "steps")[2:], file=sys.stderr)
    return 0
