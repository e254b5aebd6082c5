"""Shared fixtures: tiny SB3 agents trained in this session and bundles built from them.

Training and building happen once per session (session-scoped, lazily per
case), so the suite trains each agent once and runs onnx2tf/TensorFlow once
per case.

Light at import: the unit lane (``pytest tests/unit``: numpy, a TFLite interpreter and pytest only) loads
this file too, so Gymnasium, torch and SB3 are imported only where a test outside ``tests/unit`` needs
them (the tests' envs are registered before the first such module is collected).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["fake_libedgetpu"]  # stand-in libedgetpu libraries and Edge TPU bundle entries

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Model probes passed in this session are cached here, not in the user's ~/.cache (edgekit.runtime.probe).
if "EDGEKIT_PROBE_CACHE" not in os.environ:
    os.environ["EDGEKIT_PROBE_CACHE"] = tempfile.mkdtemp(prefix="edgekit-test-probes-")
    atexit.register(shutil.rmtree, os.environ["EDGEKIT_PROBE_CACHE"], True)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_MODEL = REPO / "examples" / "ppo-Pendulum-v1.zip"
UNIT_TESTS = Path(__file__).resolve().parent / "unit"


def register_test_envs() -> None:
    """Register the edgekit-test/ envs (tests/coverage_envs.py, tests/coverage_envs_images.py) with Gymnasium."""
    import coverage_envs  # noqa: F401
    import coverage_envs_images  # noqa: F401


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Register the tests' envs before the first test module outside the unit lane is imported."""
    if isinstance(collector, pytest.Module) and UNIT_TESTS not in Path(collector.path).resolve().parents:
        register_test_envs()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The emulated Raspberry Pi OS tests run last: their check runs in the background meanwhile
    (``_pi_emulated_in_background``)."""
    emulated = [item for item in items if item.get_closest_marker("pi_emulated")]
    if emulated:
        items[:] = [item for item in items if not item.get_closest_marker("pi_emulated")] + emulated


@pytest.fixture(scope="session", autouse=True)
def _pi_emulated_in_background(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                               _build_helper: None) -> Any:
    """When the session holds the emulated Raspberry Pi OS tests, build their two bundles at its first test and
    start their check (minutes of qemu) in the background; tests/test_pi_emulated.py waits for it at the end."""
    import pi_emulated_run

    if any(item.get_closest_marker("pi_emulated") for item in request.session.items) \
            and pi_emulated_run.missing_tools() is None:
        built_bundle = request.getfixturevalue("built_bundle")
        pi_emulated_run.start([built_bundle(name).bundle_dir for name in pi_emulated_run.STRICT_BUNDLES],
                              tmp_path_factory.mktemp("pi-emulated"))
    yield
    run = pi_emulated_run.started()
    if run is not None:
        run.stop()  # a session that ended early (-x, Ctrl-C) leaves no qemu behind


@dataclass(frozen=True)
class AgentCase:
    """One agent to train: algorithm, env, and the kwargs that shape its policy."""

    name: str
    algo: str
    env_id: str
    steps: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    conditioning: dict[str, Any] = field(default_factory=dict)  # ConditioningOptions for the build
    trained_as: str = ""  # reuse another case's trained model
    policy: str = "MlpPolicy"  # SB3 policy alias
    fully_on_edgetpu: bool = True  # False: an op the Edge TPU lacks (the check predicts a graph cut)


# CnnPolicy on the image envs of coverage_envs_images: HWC envs (SB3 transposes them) and CHW ones, 1 and 3
# channels, 36 and 48 pixels (48: NatureCNN's last feature map is 2x2, so the flatten order matters),
# normalize_images on and off; a NatureCNN with 32 features and small replay buffers keep them quick.
_CNN = {"features_extractor_kwargs": {"features_dim": 32}}
_OFF_POLICY_IMAGES = {"learning_starts": 100, "buffer_size": 500, "batch_size": 32}
IMAGE_CASES = (
    AgentCase("ppo-image-hwc3", "PPO", "edgekit-test/DotHWC3x48-v0", 128, {
        "n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": _CNN}, policy="CnnPolicy"),
    AgentCase("ppo-image-chw3-box", "PPO", "edgekit-test/DotCHW3Box-v0", 128, {
        "n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": _CNN}, policy="CnnPolicy"),
    AgentCase("a2c-image-chw1-raw", "A2C", "edgekit-test/DotCHW1x48-v0", 128, {
        "n_steps": 8, "policy_kwargs": {**_CNN, "normalize_images": False}}, policy="CnnPolicy"),
    AgentCase("a2c-image-hwc1-box", "A2C", "edgekit-test/DotHWC1Box-v0", 128, {
        "n_steps": 8, "policy_kwargs": _CNN}, policy="CnnPolicy"),
    AgentCase("sac-image-hwc3", "SAC", "edgekit-test/DotHWC3x48Box-v0", 150, {
        **_OFF_POLICY_IMAGES, "policy_kwargs": {**_CNN, "net_arch": [32]}}, policy="CnnPolicy"),
    AgentCase("td3-image-chw3-raw", "TD3", "edgekit-test/DotCHW3Box-v0", 150, {
        **_OFF_POLICY_IMAGES, "policy_kwargs": {**_CNN, "net_arch": [32], "normalize_images": False}},
        policy="CnnPolicy"),
    AgentCase("ddpg-image-hwc1", "DDPG", "edgekit-test/DotHWC1Box-v0", 150, {
        **_OFF_POLICY_IMAGES, "policy_kwargs": {**_CNN, "net_arch": [32]}}, policy="CnnPolicy"),
    AgentCase("dqn-image-hwc1", "DQN", "edgekit-test/DotHWC1-v0", 150, {
        **_OFF_POLICY_IMAGES, "policy_kwargs": {**_CNN, "net_arch": [32]}}, policy="CnnPolicy"),
    # multi-branch actions behind a CNN: per-branch argmax and Bernoulli logit > 0 on image features
    AgentCase("ppo-image-hwc1-multidiscrete", "PPO", "edgekit-test/DotHWC1MultiDiscrete-v0", 128, {
        "n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": _CNN}, policy="CnnPolicy"),
    AgentCase("ppo-image-chw1-multibinary", "PPO", "edgekit-test/DotCHW1MultiBinary-v0", 128, {
        "n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": _CNN}, policy="CnnPolicy"),
    AgentCase("a2c-image-hwc1-multidiscrete", "A2C", "edgekit-test/DotHWC1MultiDiscrete-v0", 128, {
        "n_steps": 8, "policy_kwargs": _CNN}, policy="CnnPolicy"),
    AgentCase("a2c-image-chw1-multibinary", "A2C", "edgekit-test/DotCHW1MultiBinary-v0", 128, {
        "n_steps": 8, "policy_kwargs": _CNN}, policy="CnnPolicy"),
)


def _space_cases() -> list[AgentCase]:
    """Every algorithm with every non-Box observation kind, and PPO/A2C with every action kind, on the tiny
    envs of tests/coverage_envs.py (a few hundred steps, 16-step episodes). MultiInputPolicy for Dict."""
    from coverage_env_ids import env_id

    on_policy = {"PPO": {"n_steps": 64, "batch_size": 32}, "A2C": {"n_steps": 8}}
    off_policy = {"learning_starts": 64, "policy_kwargs": {"net_arch": [32, 32]}}
    cases = []
    for algo, kwargs in on_policy.items():
        for obs in ("box", "discrete", "multi_discrete", "multi_binary", "dict"):
            for act in ("box", "discrete", "multi_discrete", "multi_binary"):
                if obs == "box" and act in ("box", "discrete"):
                    continue  # Pendulum and CartPole above
                cases.append(AgentCase(f"{algo.lower()}-{obs}-{act}".replace("_", ""), algo, env_id(obs, act), 128,
                                       {**kwargs, "policy_kwargs": {"net_arch": [32, 32]}},
                                       policy="MultiInputPolicy" if obs == "dict" else "MlpPolicy"))
    for algo, act in (("SAC", "box"), ("TD3", "box"), ("DDPG", "box"), ("DQN", "discrete")):
        for obs in ("discrete", "multi_discrete", "multi_binary", "dict"):
            kwargs = off_policy
            if algo == "SAC" and obs == "dict":  # the extractor named in policy_kwargs (a pickled class reference)
                kwargs = {**off_policy, "policy_kwargs": {**off_policy["policy_kwargs"],
                                                          "features_extractor_class": "CombinedExtractor"}}
            cases.append(AgentCase(f"{algo.lower()}-{obs}-{act}".replace("_", ""), algo, env_id(obs, act), 128,
                                   kwargs, policy="MultiInputPolicy" if obs == "dict" else "MlpPolicy"))
    # multi-branch actions through the split int8 input's fast step
    cases.append(AgentCase("ppo-box-multidiscrete-split", "PPO", env_id("box", "multi_discrete"), 0,
                           conditioning={"force_split": True}, trained_as="ppo-box-multidiscrete"))
    cases.append(AgentCase("a2c-box-multibinary-split", "A2C", env_id("box", "multi_binary"), 0,
                           conditioning={"force_split": True}, trained_as="a2c-box-multibinary"))
    # one-hot, binary and float features through the split int8 input
    cases.append(AgentCase("dqn-dict-discrete-split", "DQN", env_id("dict", "discrete"), 0,
                           conditioning={"force_split": True}, trained_as="dqn-dict-discrete",
                           policy="MultiInputPolicy"))
    # sb3-contrib algorithms on the non-Box observation kinds of MlpPolicy (one-hot / 0-1 features on the host)
    contrib = {"TQC": ("box", {**off_policy, "policy_kwargs": {"net_arch": [32, 32], "n_quantiles": 5}}),
               "CrossQ": ("box", off_policy),
               "QRDQN": ("discrete", {**off_policy, "policy_kwargs": {"net_arch": [32, 32], "n_quantiles": 5}}),
               "TRPO": (("box", "discrete"), {"n_steps": 64, "batch_size": 32, "policy_kwargs": {"net_arch": [32]}}),
               "ARS": (("box", "discrete"), {"n_delta": 1, "zero_policy": False, "policy_kwargs": {"net_arch": [16]}})}
    for algo, (actions, kwargs) in contrib.items():
        for act in (actions,) if isinstance(actions, str) else actions:
            for obs in ("discrete", "multi_discrete", "multi_binary"):
                steps = 64 if algo == "ARS" else 128
                cases.append(AgentCase(f"{algo.lower()}-{obs}-{act}".replace("_", ""), algo, env_id(obs, act), steps,
                                       kwargs))
    # TQC's MultiInputPolicy (SAC's CombinedExtractor): the RL Zoo's goal-conditioned HER agents
    cases.append(AgentCase("tqc-dict-box", "TQC", env_id("dict", "box"), 128, contrib["TQC"][1],
                           policy="MultiInputPolicy"))
    # a non-float Box (SB3 casts it to float): the same "box" kind, checked once
    cases.append(AgentCase("ppo-intbox-discrete", "PPO", env_id("int_box", "discrete"), 128,
                           {**on_policy["PPO"], "policy_kwargs": {"net_arch": [32, 32]}}))
    return cases


# Every supported combination of edgekit.host.support_matrix (tests/test_coverage.py fails
# when one has no case here), and non-default net_arch / activation_fn
# (including separate pi/vf nets). Each case is built and checked against SB3's
# predict end to end (tests/test_build_e2e.py).
AGENT_CASES = {
    case.name: case
    for case in (
        AgentCase("ppo-pendulum", "PPO", "Pendulum-v1", 512, {"n_steps": 256, "batch_size": 64}),
        AgentCase("ppo-cartpole", "PPO", "CartPole-v1", 512, {"n_steps": 256, "batch_size": 64}),
        AgentCase("ppo-pendulum-custom", "PPO", "Pendulum-v1", 256, {
            "n_steps": 128, "batch_size": 64,
            "policy_kwargs": {"net_arch": {"pi": [32, 16], "vf": [8]}, "activation_fn": "ReLU"}}),
        AgentCase("a2c-pendulum", "A2C", "Pendulum-v1", 200, {"n_steps": 8}),
        AgentCase("a2c-cartpole", "A2C", "CartPole-v1", 200, {"n_steps": 8}),
        AgentCase("sac-pendulum", "SAC", "Pendulum-v1", 300, {
            "learning_starts": 100, "policy_kwargs": {"net_arch": [64, 64]}}),
        AgentCase("td3-pendulum", "TD3", "Pendulum-v1", 300, {
            "learning_starts": 100, "policy_kwargs": {"net_arch": [64, 48], "activation_fn": "Tanh"}}),
        AgentCase("ddpg-pendulum", "DDPG", "Pendulum-v1", 300, {
            "learning_starts": 100, "policy_kwargs": {"net_arch": [64, 64]}}),
        AgentCase("dqn-cartpole", "DQN", "CartPole-v1", 600, {
            "learning_starts": 100, "policy_kwargs": {"net_arch": [64, 64]}}),
        AgentCase("dqn-mountaincar", "DQN", "MountainCar-v0", 300, {
            "learning_starts": 100, "policy_kwargs": {"net_arch": [32]}}),
        # the split int8 input (coarse + residual per feature), forced so that its path is always tested
        AgentCase("td3-pendulum-split", "TD3", "Pendulum-v1", 0, conditioning={"force_split": True},
                  trained_as="td3-pendulum"),
        AgentCase("dqn-cartpole-split", "DQN", "CartPole-v1", 0, conditioning={"force_split": True},
                  trained_as="dqn-cartpole"),
        *IMAGE_CASES,
        # sb3-contrib (edgekit-sb3[contrib]): each algorithm x its action kinds (ARS: both of its policies)
        AgentCase("tqc-pendulum-sde", "TQC", "Pendulum-v1", 300, {
            "learning_starts": 100, "use_sde": True,
            "policy_kwargs": {"net_arch": [32, 32], "n_quantiles": 5}}),
        AgentCase("qrdqn-cartpole", "QRDQN", "CartPole-v1", 400, {
            "learning_starts": 100, "policy_kwargs": {"net_arch": [32, 32], "n_quantiles": 10}}),
        AgentCase("trpo-pendulum", "TRPO", "Pendulum-v1", 256, {
            "n_steps": 128, "batch_size": 64, "policy_kwargs": {"net_arch": [32, 32]}}),
        AgentCase("trpo-cartpole", "TRPO", "CartPole-v1", 256, {
            "n_steps": 128, "batch_size": 64, "policy_kwargs": {"net_arch": [32, 32]}}),
        AgentCase("ars-pendulum", "ARS", "Pendulum-v1", 400, {  # tanh-squashed, unscaled
            "n_delta": 1, "zero_policy": False, "policy_kwargs": {"net_arch": [16]}}),
        AgentCase("ars-cartpole", "ARS", "CartPole-v1", 100, {
            "n_delta": 1, "zero_policy": False, "policy_kwargs": {"net_arch": [16]}}),
        AgentCase("ars-linear-pendulum", "ARS", "Pendulum-v1", 400, {  # clipped; Linear without bias
            "n_delta": 1, "zero_policy": False}, policy="LinearPolicy"),
        AgentCase("ars-linear-cartpole", "ARS", "CartPole-v1", 100, {
            "n_delta": 1, "zero_policy": False}, policy="LinearPolicy"),
        AgentCase("crossq-pendulum", "CrossQ", "Pendulum-v1", 300, {  # BatchRenorm folded into the Linears
            "learning_starts": 100, "policy_kwargs": {"net_arch": [32, 32]}}),
        # gSDE: the deterministic action is action_net's mean; squash_output: tanh, then unscaled
        AgentCase("ppo-pendulum-sde", "PPO", "Pendulum-v1", 256, {"n_steps": 128, "batch_size": 64, "use_sde": True}),
        AgentCase("sac-pendulum-sde", "SAC", "Pendulum-v1", 300, {  # clip_mean: Hardtanh before the tanh
            "learning_starts": 100, "use_sde": True, "policy_kwargs": {"net_arch": [32, 32]}}),
        AgentCase("a2c-pendulum-sde-squash", "A2C", "Pendulum-v1", 200, {
            "n_steps": 8, "use_sde": True, "policy_kwargs": {"squash_output": True}}),
        # activations the Edge TPU lacks: a fully int8 CPU model, the report says which part runs where
        AgentCase("ppo-pendulum-hardswish", "PPO", "Pendulum-v1", 128, {
            "n_steps": 128, "batch_size": 64, "policy_kwargs": {"net_arch": [32, 32], "activation_fn": "Hardswish"}},
                  fully_on_edgetpu=False),
        AgentCase("ppo-pendulum-elu", "PPO", "Pendulum-v1", 128, {
            "n_steps": 128, "batch_size": 64, "policy_kwargs": {"net_arch": [32, 32], "activation_fn": "ELU"}},
                  fully_on_edgetpu=False),
        AgentCase("ppo-pendulum-logsigmoid", "PPO", "Pendulum-v1", 128, {  # LOG: the report's per-layer part
            "n_steps": 128, "batch_size": 64, "policy_kwargs": {"net_arch": [16, 16], "activation_fn": "LogSigmoid"}},
                  fully_on_edgetpu=False),
        AgentCase("a2c-cartpole-leakyrelu", "A2C", "CartPole-v1", 200, {
            "n_steps": 8, "policy_kwargs": {"net_arch": [32, 32], "activation_fn": "LeakyReLU"}}),
        *_space_cases(),
    )
}


def algorithm_class(name: str) -> type:
    """The SB3 or sb3-contrib class of a case's algorithm, as edgekit's table names it."""
    from edgekit.host.algorithms import ALGORITHMS

    return ALGORITHMS[name].load_class()


def _train(case: AgentCase, path: Path) -> Path:
    import torch

    register_test_envs()

    torch.set_num_threads(1)
    kwargs = dict(case.kwargs)
    policy_kwargs = dict(kwargs.pop("policy_kwargs", {}))
    if isinstance(policy_kwargs.get("activation_fn"), str):
        policy_kwargs["activation_fn"] = getattr(torch.nn, policy_kwargs["activation_fn"])
    if isinstance(policy_kwargs.get("features_extractor_class"), str):  # pickled into the zip as a class reference
        from stable_baselines3.common import torch_layers

        policy_kwargs["features_extractor_class"] = getattr(torch_layers, policy_kwargs["features_extractor_class"])
    cls = algorithm_class(case.algo)
    model = cls(case.policy, case.env_id, seed=0, device="cpu", policy_kwargs=policy_kwargs or None, **kwargs)
    model.learn(total_timesteps=case.steps)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edgekit")


def model_for(work_dir: Path, name: str) -> Path:
    """The case's model.zip, trained once per session (by this process or the helper: tests/shared_builds.py)."""
    import shared_builds

    case = AGENT_CASES[name]
    if case.trained_as:
        return model_for(work_dir, case.trained_as)
    return shared_builds.obtain(work_dir, f"train-{name}", lambda: _train(case, work_dir / f"{name}.zip"))


@dataclass(frozen=True)
class BuiltBundle:
    case: AgentCase
    model_path: Path
    bundle_dir: Path
    result: Any  # edgekit.pipeline.BuildResult


def bundle_for(work_dir: Path, name: str) -> BuiltBundle:
    """The case's bundle, built in-process once per session (by this process or the helper)."""
    import shared_builds

    case = AGENT_CASES[name]
    output = work_dir / f"{name}.bundle"

    def make() -> dict[str, Any]:
        from edgekit.core.progress import Progress
        from edgekit.pipeline import BuildOptions, ReportOptions, build
        from edgekit.stages.condition import ConditioningOptions
        from edgekit.stages.rollouts import RolloutRecipe

        register_test_envs()
        model = model_for(work_dir, name)
        options = BuildOptions(
            model=model,
            env_id=case.env_id,
            output=output,
            recipe=RolloutRecipe(calibration_steps=600, held_out_steps=600, seed=1),
            report=ReportOptions(episodes=2),
            conditioning=ConditioningOptions(**case.conditioning),
        )
        return {"model": model, "result": build(options, Progress(quiet=True))}

    made = shared_builds.obtain(work_dir, f"bundle-{name}", make)
    return BuiltBundle(case, made["model"], output, made["result"])


@pytest.fixture(scope="session")
def trained_model(work_dir: Path) -> Callable[[str], Path]:
    """``trained_model(name)`` -> path of that case's model.zip, trained once per session."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = model_for(work_dir, name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def built_bundle(work_dir: Path) -> Callable[[str], BuiltBundle]:
    """``built_bundle(name)`` -> a bundle built in-process from that case, once per session."""
    cache: dict[str, BuiltBundle] = {}

    def get(name: str) -> BuiltBundle:
        if name not in cache:
            cache[name] = bundle_for(work_dir, name)
        return cache[name]

    return get


@pytest.fixture(scope="session", autouse=True)
def _build_helper(request: pytest.FixtureRequest, work_dir: Path) -> Any:
    """When the session builds every case (tests/test_build_e2e.py), a helper process builds them from the far
    end of that module's order on the other core (tests/shared_builds.py); ``EDGEKIT_TEST_BUILD_HELPER=0``: no
    helper."""
    import shared_builds

    names = [item.callspec.params["name"] for item in request.session.items
             if item.name.startswith("test_bundle_is_complete_and_fully_int8[") and hasattr(item, "callspec")]
    wanted = len(names) > 1 and os.environ.get("EDGEKIT_TEST_BUILD_HELPER", "1") != "0"
    helper = shared_builds.start_helper(work_dir, names[::-1]) if wanted else None
    yield
    if helper is not None and helper.poll() is None:
        helper.kill()
        helper.wait()


def run_cli(*args: str, stdin: str | None = None, timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edgekit ARGS`` as a user would (in ``cwd``, default the repository), capturing output."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGEKIT_DEBUG", None) if env is None or "EDGEKIT_DEBUG" not in env else None
    if cwd is not None:  # `python -m edgekit` must still find this tree's package
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), full_env.get("PYTHONPATH"))))
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or REPO,
    )


def run_cli_batch(commands: list[tuple[str, ...]], timeout: float = 300, env: dict | None = None,
                  cwd: Path | None = None) -> list[subprocess.CompletedProcess[str]]:
    """``run_cli(*command)`` for each command, all in one fresh interpreter (tests/cli_batch.py): for error
    cases that would each pay the host stack's start-up; every command gets its own fds, env and exit code."""
    import json

    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGEKIT_DEBUG", None) if env is None or "EDGEKIT_DEBUG" not in env else None
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), full_env.get("PYTHONPATH"))))
    with tempfile.TemporaryDirectory(prefix="edgekit-cli-batch-") as scratch:
        cases, results = Path(scratch) / "cases.json", Path(scratch) / "results.json"
        cases.write_text(json.dumps([{"args": list(c), "env": full_env, "cwd": str(cwd or REPO)} for c in commands]))
        proc = subprocess.run([sys.executable, str(Path(__file__).with_name("cli_batch.py")), str(cases), str(results)],
                              capture_output=True, text=True, timeout=timeout * len(commands), env=full_env,
                              cwd=cwd or REPO)
        assert proc.returncode == 0 and results.is_file(), proc.stderr[-3000:]
        return [subprocess.CompletedProcess([sys.executable, "-m", "edgekit", *c], r["returncode"], r["stdout"],
                                            r["stderr"]) for c, r in zip(commands, json.loads(results.read_text()))]


def run_cli_each(commands: list[tuple[str, ...]], jobs: int = 2,
                 **kwargs: Any) -> list[subprocess.CompletedProcess[str]]:
    """``run_cli(*command, **kwargs)`` for each command, ``jobs`` at a time (independent builds on both cores);
    the results in the commands' order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda command: run_cli(*command, **kwargs), commands))


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A failed command that printed exactly one ``error:`` line and a ``fix:`` line, no traceback, and
    every needle."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "  fix: " in proc.stderr, proc.stderr
    assert "edgekit bug" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzz families' counts (tests/fuzz_tally.py), when any ran."""
    from fuzz_tally import summary_lines

    lines = summary_lines()
    if lines:
        terminalreporter.section("fuzz families: tried, clean error, accepted, crash, hang")
        for line in lines:
            terminalreporter.write_line(line)
