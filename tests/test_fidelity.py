"""The fidelity stages' maths, on real (tiny) SB3 agents: every rewrite that claims to be exact in float
is, the bounded ones stay within their bound, and the int8 simulation they decide on matches TFLite."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.bundle.manifest import ObsNormalization
from edgekit.core.postprocess import PostProcessor
from edgekit.stages.artifacts import PolicyGraph
from edgekit.stages.condition import ConditioningOptions, _argmax_clamp, condition, model_inputs
from edgekit.stages.int8sim import QuantSim, simulate, supported, weight_grid
from edgekit.stages.score import FidelityScore
from edgekit.stages.widen import WidenPlan, parameter_count, widen

OFF = dict(input_scaling=False, output_range=False, finetune=False, input_split=0, widen=False, per_channel=False)
RANGES_ONLY = dict(finetune=False, input_split=0, widen=False, per_channel=False)


def _agent(trained_model, name, normalize=None):
    from edgekit.host.loading import load_agent
    from edgekit.stages.extract import extract_policy

    agent = load_agent(trained_model(name))
    return agent, extract_policy(agent, normalize)


def _sets(agent, graph, env_id, steps=400, seed=3):
    from edgekit.core.progress import Progress
    from edgekit.stages.rollouts import RolloutRecipe, collect_observations

    return collect_observations(agent, graph, env_id, RolloutRecipe(calibration_steps=steps, held_out_steps=steps,
                                                                    seed=seed), Progress(quiet=True))


def _ranges_only(trained_model, name, env_id):
    """A session agent conditioned by the range folds alone: its graph, sets, actor, calibration inputs."""
    agent, graph = _agent(trained_model, name)
    sets = _sets(agent, graph, env_id)
    conditioned = condition(graph, sets, agent.action_space, ConditioningOptions(**RANGES_ONLY))
    return graph, sets, conditioned.graph.module, model_inputs(sets.calibration, conditioned.preprocess)


def _actions(graph, postprocess, space, x):
    return PostProcessor(postprocess, space)(graph.outputs(x))


@pytest.mark.parametrize("name,env_id", [("ppo-pendulum", "Pendulum-v1"), ("sac-pendulum", "Pendulum-v1"),
                                         ("td3-pendulum", "Pendulum-v1"), ("dqn-cartpole", "CartPole-v1"),
                                         ("ppo-pendulum-custom", "Pendulum-v1")])
def test_folded_scaling_and_output_range_reproduce_the_policy(trained_model, name, env_id):
    """Float graph with folded input scaling (and output range) == the original policy on raw observations."""
    agent, graph = _agent(trained_model, name)
    sets = _sets(agent, graph, env_id)
    obs = sets.calibration
    scaled = condition(graph, sets, agent.action_space, ConditioningOptions(**{**OFF, "input_scaling": True}))
    np.testing.assert_allclose(scaled.graph.outputs(model_inputs(obs, scaled.preprocess)), graph.outputs(obs),
                               rtol=1e-4, atol=1e-4)
    ranged = condition(graph, sets, agent.action_space, ConditioningOptions(**RANGES_ONLY))
    expected = _actions(graph, graph.postprocess, agent.action_space, obs)
    actual = PostProcessor(ranged.graph.postprocess, agent.action_space)(
        ranged.graph.outputs(model_inputs(obs, ranged.preprocess)))
    if agent.action_space.kind == "discrete":
        assert np.mean(actual == expected) == 1.0
    else:  # tanh(k * clamp(z / k)) vs tanh(z): equal while |z| <= k, within 1 - tanh(4) beyond
        span = agent.action_space.high_array() - agent.action_space.low_array()
        assert np.max(np.abs(actual - expected) / span) < 1e-3


def test_vecnormalize_is_applied_on_the_host_including_its_clip(trained_model):
    """A policy trained behind VecNormalize: the conditioned graph on raw observations == SB3's predict on
    clip((obs - mean) / std, -clip, clip), also for observations beyond the clip."""
    norm = ObsNormalization(mean=(0.3, -0.2, 1.5), std=(0.5, 0.8, 2.0), clip=2.0)
    agent, graph = _agent(trained_model, "ppo-pendulum", normalize=norm)
    sets = _sets(agent, graph, "Pendulum-v1")
    rng = np.random.default_rng(0)
    obs = np.concatenate([sets.held_out, rng.uniform(-12, 12, size=(200, 3)).astype(np.float32)])
    expected = agent.model.predict(norm.apply(obs).astype(np.float32), deterministic=True)[0]
    for options in (ConditioningOptions(**OFF), ConditioningOptions(**RANGES_ONLY)):
        conditioned = condition(graph, sets, agent.action_space, options)
        assert conditioned.preprocess.normalize == norm
        actual = PostProcessor(conditioned.graph.postprocess, agent.action_space)(
            conditioned.graph.outputs(model_inputs(obs, conditioned.preprocess)))
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_relu_pieces_are_exact_in_float_and_prune_unreached_pieces(trained_model):
    *_, actor, x = _ranges_only(trained_model, "dqn-cartpole", "CartPole-v1")
    wide = widen(actor, WidenPlan((4, 4)), x)
    assert [type(m).__name__ for m in wide.body] == ["Linear", "ReLU6", "Linear", "ReLU6"]
    with torch.no_grad():
        expected = actor(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(wide(torch.as_tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-5)
    # every piece reaches RELU6's top on the calibration set, or its unit ends there
    assert parameter_count(wide) < 16 * parameter_count(actor)
    # the int8 simulation sees the finer hidden activations
    score = FidelityScore.build(expected, discrete=False, span=2.0)
    assert score.of(wide, x, all_rows=True) < score.of(actor, x, all_rows=True)


def test_tanh_copies_and_output_copies_stay_close_in_float(trained_model):
    for name in ("ppo-pendulum", "sac-pendulum"):
        *_, actor, x = _ranges_only(trained_model, name, "Pendulum-v1")
        plan = WidenPlan((4, 4), output_copies=4 if actor.squash else 1)
        wide = widen(actor, plan, x)
        with torch.no_grad():
            expected, got = actor(torch.as_tensor(x)).numpy(), wide(torch.as_tensor(x)).numpy()
        # offsets are a fraction of one int8 step: second-order deviation, far below one output step (1/128)
        assert np.abs(got - expected).max() < 1e-3, name
        assert (wide.tail is not None) == actor.squash


def test_split_input_is_one_layer_and_close_in_float(trained_model):
    agent, graph = _agent(trained_model, "td3-pendulum")
    sets = _sets(agent, graph, "Pendulum-v1")
    options = ConditioningOptions(finetune=False, widen=False, force_split=True)
    conditioned = condition(graph, sets, agent.action_space, options)
    assert conditioned.preprocess.split == 16 and conditioned.graph.input_size == 6
    first = conditioned.graph.module.first_linear()
    assert isinstance(first, nn.Linear) and first.in_features == 6
    ranged = condition(graph, sets, agent.action_space, ConditioningOptions(**RANGES_ONLY))
    x = sets.held_out
    with_split = conditioned.graph.outputs(model_inputs(x, conditioned.preprocess))
    plain = ranged.graph.outputs(model_inputs(x, ranged.preprocess))
    # the residual is kept to 1/16 of an input step: far finer than the int8 input itself
    assert np.abs(with_split - plain).max() < 0.01


def test_distillation_stays_on_the_grid_within_one_step_and_is_kept_only_if_it_pays(trained_model):
    from edgekit.stages.finetune import finetune

    graph, sets, actor, x = _ranges_only(trained_model, "dqn-cartpole", "CartPole-v1")
    with torch.no_grad():
        targets = actor(torch.as_tensor(x)).numpy()
    score = FidelityScore.build(targets, discrete=True, span=1.0, policy_outputs=graph.outputs(sets.calibration))
    result = finetune(actor, x, targets, score, steps=200)
    assert result.kept == (result.score_after < result.score_before)
    if result.kept:
        for before, after in zip(_linears(actor), _linears(result.actor)):
            np.testing.assert_allclose(after.weight, weight_grid(after.weight), atol=1e-6)
            step = float(before.weight.abs().max()) / 127.0
            assert float((after.weight - before.weight).abs().max()) <= 1.5 * step + 1e-7
    assert result.actor is actor or result.kept


def _linears(actor):
    return [m for m in actor.body if isinstance(m, nn.Linear)] + [actor.head]


def test_actors_the_simulation_does_not_cover_are_conditioned_without_the_measured_steps(trained_model):
    agent, graph = _agent(trained_model, "ppo-pendulum")
    sets = _sets(agent, graph, "Pendulum-v1")
    odd = copy.deepcopy(graph.module)
    odd.body = nn.Sequential(odd.body[0], nn.SiLU(), *list(odd.body)[2:])  # an activation it does not model
    odd_graph = PolicyGraph(module=odd, input_size=graph.input_size, output_size=graph.output_size,
                            output=graph.output, postprocess=graph.postprocess)
    assert not supported(odd)
    conditioned = condition(odd_graph, sets, agent.action_space)
    assert "skipped" in conditioned.applied["measured_steps"]
    assert "input_scaling" in conditioned.applied and conditioned.preprocess.split == 0
    np.testing.assert_allclose(
        PostProcessor(conditioned.graph.postprocess, agent.action_space)(
            conditioned.graph.outputs(model_inputs(sets.held_out, conditioned.preprocess))),
        _actions(odd_graph, odd_graph.postprocess, agent.action_space, sets.held_out), atol=1e-4)


def test_argmax_clamp_leaves_room_for_the_best_two():
    rng = np.random.default_rng(0)
    two = rng.normal(size=(1000, 2))
    two -= two.mean(axis=1, keepdims=True)
    assert _argmax_clamp(two) == pytest.approx(np.percentile(np.abs(two), 99.5))
    three = rng.normal(size=(1000, 3)) * [1.0, 1.0, 0.01] + [5.0, 5.0, 0.0]  # two actions far above the mean
    three -= three.mean(axis=1, keepdims=True)
    c = _argmax_clamp(three)
    second = np.sort(three, axis=1)[:, -2]
    assert np.mean(second >= c) <= 0.002


def test_decisive_states_are_judged_on_the_policy_outputs():
    from edgekit.core.metrics import fidelity_metrics
    from edgekit.core.spaces import SpaceSpec

    space = SpaceSpec(kind="discrete", shape=(), dtype="int64", n=2)
    q = np.array([[100.0, 100.02], [100.0, 103.0], [97.0, 100.0], [100.0, 100.0001]] * 25)
    centred = (q - q.mean(axis=1, keepdims=True)) / 0.01  # a conditioned copy: other spread, same argmax
    actions = q.argmax(axis=1)
    own = fidelity_metrics(centred, centred, actions, actions, space, 0.1, policy_out=q)["discrete"]
    assert own["decisive_share"] == pytest.approx(0.5)  # gaps of 3 only; 0.02 is below 1 % of the spread


def test_the_int8_simulation_matches_tflite(trained_model, tmp_path):
    """What the fidelity stages decide on: QuantSim vs the real converter and interpreter, on widened
    ReLU (pieces, RELU6) and Tanh + squash (gain layer, output copies) actors."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.stages.convert import convert_to_tensorflow
    from edgekit.stages.export_onnx import export_onnx
    from edgekit.stages.quantize import quantize_int8

    for name, env_id, plan in (("dqn-cartpole", "CartPole-v1", WidenPlan((2, 4))),
                               ("ppo-pendulum", "Pendulum-v1", WidenPlan((2, 2))),
                               ("sac-pendulum", "Pendulum-v1", WidenPlan((2, 2), output_copies=4))):
        agent, graph = _agent(trained_model, name)
        sets = _sets(agent, graph, env_id, steps=300)
        conditioned = condition(graph, sets, agent.action_space,
                                ConditioningOptions(finetune=False, widen=False, force_split=True, per_channel=False))
        pre = conditioned.preprocess
        x, held = model_inputs(sets.calibration, pre), model_inputs(sets.held_out, pre)
        actor = widen(conditioned.graph.module, plan, x)
        wide = PolicyGraph(module=actor, input_size=x.shape[1], output_size=graph.output_size,
                           output=graph.output, postprocess=conditioned.graph.postprocess)
        work = tmp_path / name
        work.mkdir()
        onnx_model = export_onnx(wide, held, work / "m.onnx")
        int8 = quantize_int8(convert_to_tensorflow(onnx_model, held, work), x, pre, work / "m.tflite")
        interpreter = Interpreter(model_path=str(int8.path))
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        s_in, z_in = inp["quantization"]
        s_out, z_out = out["quantization"]
        real = []
        for row in pre.model_inputs(sets.held_out, s_in):
            interpreter.set_tensor(inp["index"], np.clip(np.rint(row / s_in) + z_in, -128, 127).astype(np.int8)[None])
            interpreter.invoke()
            real.append((interpreter.get_tensor(out["index"])[0].astype(np.float64) - z_out) * s_out)
        simulated = simulate(actor, x, pre.model_inputs(sets.held_out, s_in))
        # TFLite's int8 TANH is a table, not an exact rounding: it may differ by one of its steps (1/128)
        step = max(s_out, 1.0 / 128.0) if actor.squash else s_out
        steps = np.abs(np.asarray(real) - simulated) / step
        assert np.mean(steps) < 0.3 and np.max(steps) <= 3, (name, np.mean(steps), np.max(steps))
        assert set(int8.ops) <= {"FULLY_CONNECTED", "TANH"}, int8.ops
        gain_layer = 1 if actor.squash and actor.squash_gain != 1.0 else 0  # squash gain: a diagonal FC
        assert len(QuantSim(actor).linears) + gain_layer == int8.ops.count("FULLY_CONNECTED")


def _synthetic_actor(sizes, activation, squash, outputs):
    import gymnasium as gym
    from stable_baselines3.common.torch_layers import FlattenExtractor

    from edgekit.host.actor import DeterministicActor

    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation()]
    actor = DeterministicActor(FlattenExtractor(gym.spaces.Box(-1, 1, (sizes[0],))), nn.Sequential(*layers),
                               nn.Linear(sizes[-1], outputs), squash=squash)
    actor.clamp = squash
    return actor.eval()


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh])
def test_widening_a_multi_action_squashed_actor_keeps_each_action(activation):
    actor = _synthetic_actor([5, 24, 16], activation, squash=True, outputs=3)
    with torch.no_grad():
        actor.head.weight.mul_(0.3)  # keep the pre-tanh values mostly inside the clamp
    x = np.random.default_rng(1).uniform(-1, 1, size=(500, 5)).astype(np.float32)
    wide = widen(actor, WidenPlan((4, 2), output_copies=4), x)
    assert wide.tail is not None and wide.tail.in_features == 12 and wide.tail.out_features == 3
    with torch.no_grad():
        expected, got = actor(torch.as_tensor(x)).numpy(), wide(torch.as_tensor(x)).numpy()
    assert np.abs(got - expected).max() < 1e-3  # the output copies (and Tanh copies) are second-order
    assert supported(wide)


def test_validation_rows_are_blocks_of_consecutive_rollout_steps():
    """Neighbours in time are nearly the same state: a validation row must not have them among the rows
    the distillation fits, or over-fitting goes unseen."""
    score = FidelityScore.build(np.zeros((2000, 1)), discrete=False, span=2.0)
    val = score.val_rows
    assert len(val) == 500 and not set(val) & set(score.train_rows)
    starts = np.flatnonzero(np.diff(val) != 1) + 1
    assert len(starts) + 1 == 4  # four blocks of 125 consecutive rows
    inside = np.isin(val - 1, val) & np.isin(val + 1, val)
    assert inside.mean() > 0.95  # almost every validation row's neighbours are validation rows too


def test_score_is_in_units_of_the_targets():
    targets = np.zeros((400, 1))
    score = FidelityScore.build(targets, discrete=False, span=2.0)
    rows = score.val_rows
    assert len(rows) == 100 and len(score.train_rows) == 300 and not set(rows) & set(score.train_rows)
    assert score.of_outputs(np.full((100, 1), 0.01)) == pytest.approx(1.0)  # 0.5 % of the range = the target
    spikes = np.zeros((100, 1))
    spikes[:5] = 0.08  # 4 % of the range on 5 % of the states: p99 = 4 %, twice its target
    assert score.of_outputs(spikes) == pytest.approx(2.0)


class _RampPendulum:
    """A Pendulum whose third feature ramps from -8 to 8 over its 400-step episodes: what the policy sees
    late in an episode (a car at the hilltop, a walker at speed) lies outside what early steps show."""

    @staticmethod
    def register() -> str:
        import gymnasium
        from gymnasium.envs.classic_control.pendulum import PendulumEnv

        class RampPendulum(PendulumEnv):
            def reset(self, **kwargs):
                self.t = 0
                obs, info = super().reset(**kwargs)
                return self._ramp(obs), info

            def step(self, action):
                obs, reward, terminated, truncated, info = super().step(action)
                self.t += 1
                return self._ramp(obs), reward, terminated, truncated, info

            def _ramp(self, obs):
                obs = obs.copy()
                obs[2] = np.float32(-8.0 + 16.0 * self.t / 400.0)
                return obs

        env_id = "edgekit-test/RampPendulum-v0"
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=RampPendulum, max_episode_steps=400)
        return env_id


def test_calibration_covers_whole_episodes_so_held_out_observations_stay_in_the_input_range():
    """Calibration episodes run to their end (subsampled over >= 8 of them), so the late states of an episode
    set the ranges too: held-out observations (whole episodes) stay inside the int8 input range."""
    from conftest import EXAMPLE_MODEL

    from edgekit.core.progress import Progress
    from edgekit.host.loading import load_agent
    from edgekit.stages.extract import extract_policy
    from edgekit.stages.rollouts import RolloutRecipe, collect_observations

    env_id = _RampPendulum.register()
    agent = load_agent(EXAMPLE_MODEL)
    graph = extract_policy(agent, None)
    recipe = RolloutRecipe(calibration_steps=600, held_out_steps=800)
    sets = collect_observations(agent, graph, env_id, recipe, Progress(quiet=True))
    conditioned = condition(graph, sets, agent.action_space, ConditioningOptions(**RANGES_ONLY))
    held = model_inputs(sets.held_out, conditioned.preprocess)  # the int8 input range is [-1, 1]
    outside = np.any(np.abs(held) > 1.0 + 2.0 / 255.0, axis=1)
    assert outside.mean() <= 0.01, f"{outside.mean():.1%} of held-out observations outside the input range"
    assert sets.facts["calibration_episodes"] >= 8


def test_distillation_stops_once_the_simulation_meets_the_targets(trained_model):
    from edgekit.stages.finetune import CHECK_EVERY, finetune

    *_, actor, x = _ranges_only(trained_model, "ppo-pendulum", "Pendulum-v1")
    with torch.no_grad():
        targets = actor(torch.as_tensor(x)).numpy()
    score = FidelityScore.build(targets, discrete=False, span=2.0)
    met = finetune(actor, x, targets, score, steps=4 * CHECK_EVERY, weights_only=True, max_steps_moved=None,
                   lr=1e-3, relative_lr=False, stop_at=1e9, patience=None)
    assert met.steps == CHECK_EVERY and "met" in met.stopped and met.kept
    stuck = finetune(actor, x, targets, score, steps=4 * CHECK_EVERY, lr=0.0, patience=1)  # nothing can move
    assert stuck.steps == CHECK_EVERY and "no lower error" in stuck.stopped and not stuck.kept
    assert stuck.actor is actor


def test_conditioning_skips_the_remaining_steps_once_the_simulation_meets_the_targets(trained_model, monkeypatch):
    import edgekit.stages.condition as conditioning

    agent, graph = _agent(trained_model, "sac-pendulum")
    sets = _sets(agent, graph, "Pendulum-v1")
    monkeypatch.setattr(conditioning, "EARLY_STOP_AT", 1e9)  # any error meets it: nothing is worth running
    quick = condition(graph, sets, agent.action_space, ConditioningOptions(finetune_steps=250))
    assert "after the range conditioning" in quick.applied["early_stop"]
    assert not {"finetune_weights", "widen", "finetune", "input_split_decision"} & set(quick.applied)
    assert quick.preprocess.split == 0 and quick.graph.module.tail is None


def test_widening_can_give_the_first_layer_alone_its_copies():
    """A Tanh actor whose first layer's pre-activations span +-40 (two saturated units; VecNormalize'd
    inputs do this): its first layer loses most, and a plan widens it alone, at a fraction of the weights."""
    from edgekit.stages.widen import choose

    actor = _synthetic_actor([6, 32, 32], nn.Tanh, squash=False, outputs=2)
    with torch.no_grad():
        actor.body[0].weight.mul_(2.0)
        actor.body[0].weight[:2].mul_(40.0)
    x = np.random.default_rng(0).uniform(-1, 1, size=(2000, 6)).astype(np.float32)
    with torch.no_grad():
        targets = actor(torch.as_tensor(x)).numpy()
    result = choose(actor, x, FidelityScore.build(targets, discrete=False, span=2.0))
    assert result.plan.copies[0] > 1 and result.plan.copies[-1] == 1, result.plan


def test_the_conditioning_says_whether_the_simulation_meets_the_targets_and_what_limits_it():
    """A steep actor (first-layer pre-activations of +-40) converted plainly misses the targets in simulation;
    the verdict says so, and which rounding adds most."""
    import re

    from edgekit.core.spaces import SpaceSpec
    from edgekit.stages.artifacts import ObservationSets

    actor = _synthetic_actor([6, 32, 32], nn.Tanh, squash=False, outputs=2)
    with torch.no_grad():
        actor.body[0].weight.mul_(2.0)
        actor.body[0].weight[:2].mul_(40.0)
    graph = PolicyGraph(module=actor, input_size=6, output_size=2, output="actions", postprocess="clip")
    rng = np.random.default_rng(0)
    sets = ObservationSets(calibration=rng.uniform(-1, 1, (1000, 6)).astype(np.float32),
                           held_out=rng.uniform(-1, 1, (200, 6)).astype(np.float32))
    box = SpaceSpec(kind="box", shape=(2,), dtype="float32", low=(-1.0, -1.0), high=(1.0, 1.0))
    plain = condition(graph, sets, box, ConditioningOptions(**OFF))  # a plain conversion misses
    verdict = plain.applied["simulated_fidelity"]
    found = re.match(r"([0-9.e+-]+) of the targets on calibration observations no step was fitted on: NOT met, "
                     r"most from rounding the (weights|activations|input)(?: \(per-tensor int8 weights; layer \d+'s "
                     r"median weight is [0-9.]+ int8 steps\))?; the int8 weights alone ([0-9.e+-]+), with the "
                     r"activations rounded too ([0-9.e+-]+), with the input too ([0-9.e+-]+)$", verdict)
    assert found, verdict
    total, weights, activations, everything = (float(found.group(i)) for i in (1, 3, 4, 5))
    assert total > 1.0 and everything == pytest.approx(total, rel=1e-2)
    added = {"weights": weights, "activations": activations - weights, "input": total - activations}
    assert found.group(2) == max(added, key=added.get)


def test_onnx_export_tolerance_follows_the_int8_output_step(tmp_path, monkeypatch):
    """float32 sums over wide layers differ between torch and ONNX Runtime by more than 1e-4 (a Humanoid
    actor's 752 split inputs: 1.5e-4 on outputs in [-1, 1]); a 20th of the int8 output step is the bound."""
    import edgekit.stages.export_onnx as export
    from edgekit.core.errors import ConversionError

    actor = _synthetic_actor([4, 8], nn.Tanh, squash=False, outputs=2)
    graph = PolicyGraph(module=actor, input_size=4, output_size=2, output="actions", postprocess="clip")
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 4)).astype(np.float32)
    monkeypatch.setattr(export, "_max_error_vs_torch", lambda *_: (1.5e-4, 2.0))  # outputs spanning [-1, 1]
    assert export.export_onnx(graph, x, tmp_path / "a.onnx").max_abs_error == 1.5e-4
    monkeypatch.setattr(export, "_max_error_vs_torch", lambda *_: (1e-3, 2.0))  # a quarter of an int8 step
    with pytest.raises(ConversionError, match="differs from torch"):
        export.export_onnx(graph, x, tmp_path / "b.onnx")


def test_a_feature_constant_in_calibration_keeps_a_usable_input_range(trained_model):
    """A feature calibration never saw change gets the widest feature's input scale (what one shared input
    scale gives it), not a zero-width range that saturates at its first change."""
    from dataclasses import replace as replaced

    agent, graph = _agent(trained_model, "ppo-pendulum")
    sets = _sets(agent, graph, "Pendulum-v1")
    frozen = sets.calibration.copy()
    frozen[:, 2] = 0.0  # the angular velocity never varied in this calibration set
    conditioned = condition(graph, replaced(sets, calibration=frozen), agent.action_space,
                            ConditioningOptions(**RANGES_ONLY))
    scale = conditioned.preprocess.scale
    assert scale[2] == pytest.approx(max(scale[0], scale[1]))
    later = model_inputs(sets.held_out, conditioned.preprocess)  # the velocity changes in deployment
    assert np.abs(later[:, 2]).max() < 10.0  # within a few input ranges, not millions of steps
