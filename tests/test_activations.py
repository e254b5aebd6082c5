"""Activations the Edge TPU lacks: exact rewrites, a fully int8 CPU model that says which part runs where,
and a one-line refusal (with what to use instead) where TFLite has no int8 form."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_cli_errors import _assert_one_line_error


@pytest.mark.parametrize("name", ["LeakyReLU", "RReLU", "ELU", "SELU"])
def test_rewrites_are_exact_in_float(name):
    import torch
    from torch import nn

    from edgekit.host.activations import prepare_activations

    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(3, 8), getattr(nn, name)(), nn.Linear(8, 8), getattr(nn, name)()).eval()
    rewritten, notes = prepare_activations(body)
    assert rewritten is not body and notes and name in notes[0]
    assert not any(type(m) is getattr(nn, name) for m in rewritten.modules())
    assert any(type(m) is getattr(nn, name) for m in body.modules())  # the original is untouched
    x = torch.randn(512, 3) * 4
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), body(x), rtol=1e-5, atol=1e-6)


def test_activations_without_an_int8_form_are_refused_by_name():
    from torch import nn

    from edgekit.core.errors import UnsupportedModelError
    from edgekit.host.activations import prepare_activations

    body = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.GELU())
    with pytest.raises(UnsupportedModelError, match="GELU.*erf") as info:
        prepare_activations(body)
    assert "SiLU" in info.value.hint
    untouched = nn.Sequential(nn.Linear(3, 8), nn.Hardswish())
    assert prepare_activations(untouched) == (untouched, ())


def test_gelu_policy_build_is_a_one_line_error(tmp_path):
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=16, batch_size=16, seed=0, device="cpu",
                policy_kwargs={"net_arch": [8], "activation_fn": torch.nn.GELU})
    model.save(tmp_path / "gelu.zip")
    proc = run_cli("build", str(tmp_path / "gelu.zip"), "--env", "Pendulum-v1", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "activation_fn GELU", "SiLU")
    assert not (tmp_path / "b").exists()


def test_hardswish_bundle_is_int8_and_says_which_part_runs_where(built_bundle):
    built = built_bundle("ppo-pendulum-hardswish")
    report = json.loads((built.bundle_dir / "report.json").read_text())
    tpu = report["edgetpu"]
    assert not tpu["fully_mappable"] and tpu["ops"][tpu["cut_index"]]["op"] == "HARD_SWISH"
    assert 0 < tpu["ops_on_tpu"] < tpu["ops_total"]
    assert all(op["on_tpu"] == (op["index"] < tpu["cut_index"]) for op in tpu["ops"])
    assert tpu["placement"].startswith("Edge TPU: op #0; CPU: ops #1-#4 (graph cut at #1 HARD_SWISH")
    assert report["build"]["edgetpu_check"]["placement"] == tpu["placement"]
    assert any("Hardswish activation" in note and "CPU" in note for note in built.result.notes)
    html = (built.bundle_dir / "report.html").read_text()
    assert "Edge TPU: which part runs where" in html and "HARD_SWISH" in html
    proc = run_cli("check", str(built.bundle_dir))
    assert proc.returncode == 3, proc.stderr
    assert f"runs where: {tpu['placement']}" in proc.stdout


@pytest.mark.parametrize(("name", "op", "fully"), [("a2c-cartpole-leakyrelu", "PRELU", True),
                                                   ("ppo-pendulum-elu", "EXP", False)])
def test_rewritten_activations_convert_fully_int8(built_bundle, name, op, fully):
    from edgekit.bundle import Manifest
    from edgekit.host.tflite_inspect import inspect_int8_model

    built = built_bundle(name)
    info = inspect_int8_model(built.bundle_dir / "model_int8.tflite")
    info.require_fully_int8()
    assert op in info.op_names
    assert "activations" in Manifest.read(built.bundle_dir).conditioning
    report = json.loads((built.bundle_dir / "report.json").read_text())
    assert report["edgetpu"]["fully_mappable"] is fully
