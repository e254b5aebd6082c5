"""Per-channel int8 weights (``stages/channels.py``) through the real pipeline: a SAC agent trained in the test
session, one of whose hidden layers gets a heavy-tailed weight tensor; onnx2tf, TensorFlow's converter and a
TFLite interpreter decide whether the 1x1 convolutions carry one scale per channel, stay on the Edge TPU's
op list, lower the int8 error against per-tensor FULLY_CONNECTED weights, and match the int8 simulation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.stages.artifacts import PolicyGraph
from edgekit.stages.channels import ChannelLinear, to_channels, with_fine_layers
from edgekit.stages.condition import ConditioningOptions, condition, model_inputs
from edgekit.stages.int8sim import simulate
from edgekit.stages.widen import WidenPlan, widen

pytestmark = pytest.mark.slow

# ranges only, then per-channel weights or not (no distillation, no widening: the weights' grid alone decides)
PER_TENSOR = dict(finetune=False, input_split=0, widen=False, per_channel=False)
PER_CHANNEL = dict(PER_TENSOR, per_channel=True)
HEAVY_ROWS = 3
HEAVY_FACTOR = 25.0


def _heavy_tailed(graph: PolicyGraph, obs: np.ndarray) -> PolicyGraph:
    """A copy whose last hidden layer gets ``HEAVY_ROWS`` more rows, ``HEAVY_FACTOR`` times its largest
    weight, as dead ReLU units (a bias below anything they can reach; the head gives them zero weights): the
    tensor's int8 scale is set by those rows, and the policy's function is exactly the trained one."""
    actor = copy.deepcopy(graph.module)
    index = max(i for i, m in enumerate(actor.body) if isinstance(m, nn.Linear))
    hidden, head = actor.body[index], actor.head
    with torch.no_grad():
        h = actor.body[:index](actor.features_extractor(torch.as_tensor(obs)))  # the layer's input
        top = float(hidden.weight.abs().max()) * HEAVY_FACTOR
        signs = torch.sign(torch.randn(HEAVY_ROWS, hidden.in_features, generator=torch.Generator().manual_seed(0)))
        grown = nn.Linear(hidden.in_features, hidden.out_features + HEAVY_ROWS)
        grown.weight.copy_(torch.cat([hidden.weight, signs * top]))
        dead = -(top * float(h.abs().sum(dim=1).max()) * 4.0 + 1.0)  # never active
        grown.bias.copy_(torch.cat([hidden.bias, torch.full((HEAVY_ROWS,), dead)]))
        wider = nn.Linear(head.in_features + HEAVY_ROWS, head.out_features)
        wider.weight.copy_(torch.cat([head.weight, torch.zeros(head.out_features, HEAVY_ROWS)], dim=1))
        wider.bias.copy_(head.bias)
    actor.body[index], actor.head = grown, wider
    return PolicyGraph(module=actor, input_size=graph.input_size, output_size=graph.output_size,
                       output=graph.output, postprocess=graph.postprocess)


def _build_int8(graph: PolicyGraph, conditioned, sets, work, per_channel: bool):
    from edgekit.stages.convert import convert_to_tensorflow
    from edgekit.stages.export_onnx import export_onnx
    from edgekit.stages.quantize import quantize_int8

    work.mkdir()
    pre = conditioned.preprocess
    held, x = model_inputs(sets.held_out, pre), model_inputs(sets.calibration, pre)
    onnx_model = export_onnx(conditioned.graph, held, work / "m.onnx")
    return quantize_int8(convert_to_tensorflow(onnx_model, held, work), x, pre, work / "m.tflite",
                         per_channel=per_channel)


def _run_tflite(path, pre, obs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    rows = []
    for row in pre.model_inputs(obs, s_in):
        interpreter.set_tensor(inp["index"], np.clip(np.rint(row / s_in) + z_in, -128, 127).astype(np.int8)[None])
        interpreter.invoke()
        rows.append((interpreter.get_tensor(out["index"])[0].astype(np.float64) - z_out) * s_out)
    return np.asarray(rows)


def _filter_scales(path) -> dict[str, list[int]]:
    """Per weight-carrying op: the number of scales of each of its weight tensors, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found: dict[str, list[int]] = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            weights = tensors[int(op["inputs"][1])]
            found.setdefault(op["op_name"], []).append(len(weights["quantization_parameters"]["scales"]))
    return found


def test_a_heavy_tailed_hidden_layer_gets_per_channel_scales_on_the_edge_tpu_and_errs_less(trained_model,
                                                                                              tmp_path):
    from edgekit.core.progress import Progress
    from edgekit.edgetpu.check import SUPPORTED_OPS, check_model
    from edgekit.host.loading import load_agent
    from edgekit.stages.extract import extract_policy
    from edgekit.stages.rollouts import RolloutRecipe, collect_observations

    agent = load_agent(trained_model("sac-pendulum"))
    plain = extract_policy(agent, None)
    sets = collect_observations(agent, plain, "Pendulum-v1", RolloutRecipe(calibration_steps=400, held_out_steps=400,
                                                                           seed=3), Progress(quiet=True))
    graph = _heavy_tailed(plain, sets.calibration)
    np.testing.assert_allclose(graph.outputs(sets.held_out), plain.outputs(sets.held_out), atol=1e-5)

    errors, models = {}, {}
    for name, options in (("per-tensor", PER_TENSOR), ("per-channel", PER_CHANNEL)):
        conditioned = condition(graph, sets, agent.action_space, ConditioningOptions(**options))
        per_channel = "per_channel_weights" in conditioned.applied
        assert per_channel == (name == "per-channel"), conditioned.applied  # the simulation chose it
        int8 = _build_int8(graph, conditioned, sets, tmp_path / name, per_channel)
        real = _run_tflite(int8.path, conditioned.preprocess, sets.held_out)
        float_out = conditioned.graph.outputs(model_inputs(sets.held_out, conditioned.preprocess))
        errors[name] = np.abs(real - float_out) / 2.0  # outputs in [-1, 1]: a share of the action range
        models[name] = (int8, conditioned)

    int8, conditioned = models["per-channel"]
    scales = _filter_scales(int8.path)
    assert "FULLY_CONNECTED" not in scales  # per-tensor FULLY_CONNECTED or none: never per-channel ones
    linears = [m for m in conditioned.graph.module.modules() if isinstance(m, nn.Linear)]
    hidden_rows = [m.out_features for m in linears]
    assert scales["CONV_2D"][:len(hidden_rows)] == hidden_rows, scales  # one scale per output channel
    assert _filter_scales(models["per-tensor"][0].path) == {"FULLY_CONNECTED": [1] * len(scales["CONV_2D"])}
    report = check_model(int8.path)
    assert set(int8.ops) <= SUPPORTED_OPS and set(int8.ops) <= {"CONV_2D", "RESHAPE", "TANH"}, int8.ops
    assert report.fully_mappable and not report.risks, (report.reasons, report.risks)
    # the heavy-tailed layer no longer rounds the bulk of its weights to a few steps
    per_tensor, per_channel = errors["per-tensor"], errors["per-channel"]
    assert np.percentile(per_channel, 99) < 0.5 * np.percentile(per_tensor, 99), (
        np.percentile(per_channel, 99), np.percentile(per_tensor, 99))
    assert per_channel.mean() < 0.5 * per_tensor.mean()


@pytest.mark.parametrize("fine", [(), (0, 1, 2)], ids=["per-channel", "coarse+fine"])
def test_the_per_channel_simulation_matches_tflite(trained_model, tmp_path, fine):
    """The simulation the stages decide on, per channel, against the converter and the interpreter: widened
    (ReLU pieces as RELU6, the squash gain and the output-copy average, all as 1x1 convolutions), or with
    every learned layer's weights as coarse + fine parts (two convolutions and an ADD, the coarse part behind
    a ReLU with its offset)."""
    from edgekit.core.progress import Progress
    from edgekit.host.loading import load_agent
    from edgekit.stages.extract import extract_policy
    from edgekit.stages.rollouts import RolloutRecipe, collect_observations

    agent = load_agent(trained_model("sac-pendulum"))
    graph = extract_policy(agent, None)
    sets = collect_observations(agent, graph, "Pendulum-v1", RolloutRecipe(calibration_steps=300, held_out_steps=300,
                                                                           seed=3), Progress(quiet=True))
    conditioned = condition(graph, sets, agent.action_space, ConditioningOptions(**PER_TENSOR))
    pre = conditioned.preprocess
    x = model_inputs(sets.calibration, pre)
    actor = to_channels(conditioned.graph.module)
    if fine:
        actor = with_fine_layers(actor, list(fine))
        simulate(actor, x, x[:1])  # calibration sets the fine layers' offsets
    else:
        actor = widen(actor, WidenPlan((2, 2), output_copies=4), x)
    assert all(isinstance(m, ChannelLinear) for m in actor.modules() if isinstance(m, nn.Linear))
    wide = PolicyGraph(module=actor, input_size=x.shape[1], output_size=graph.output_size, output=graph.output,
                       postprocess=conditioned.graph.postprocess)
    int8 = _build_int8(wide, type(conditioned)(graph=wide, preprocess=pre, applied={}), sets, tmp_path / "wide",
                       per_channel=True)
    assert set(int8.ops) <= {"CONV_2D", "RESHAPE", "TANH"} | ({"ADD"} if fine else set()), int8.ops
    assert int8.ops.count("ADD") == len(fine)
    from edgekit.edgetpu.check import check_model

    report = check_model(int8.path)
    assert report.fully_mappable and not report.risks, (report.reasons, report.risks)
    real = _run_tflite(int8.path, pre, sets.held_out)
    from ai_edge_litert.interpreter import Interpreter

    s_in = Interpreter(model_path=str(int8.path)).get_input_details()[0]["quantization"][0]
    s_out = Interpreter(model_path=str(int8.path)).get_output_details()[0]["quantization"][0]
    simulated = simulate(actor, x, pre.model_inputs(sets.held_out, s_in))
    steps = np.abs(real - simulated) / max(s_out, 1.0 / 128.0)  # TANH's table may differ by one of its steps
    assert np.mean(steps) < 0.3 and np.max(steps) <= 3, (np.mean(steps), np.max(steps))
