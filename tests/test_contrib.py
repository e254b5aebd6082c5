"""sb3-contrib algorithms: recognised without sb3-contrib, loaded with it; what stays refused says why.

The end-to-end cases (build -> runtime vs SB3 predict) are in conftest.AGENT_CASES; these tests cover
the table's folds (QR-DQN's quantile mean, CrossQ's BatchRenorm) and the refusals.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, run_cli
from test_cli_errors import _assert_one_line_error

from edgekit.core.errors import UnsupportedModelError
from edgekit.host.loading import load_agent
from edgekit.host.loading.model_zip import inspect_model_zip


@pytest.fixture(scope="module")
def refused_models(tmp_path_factory):
    """Untrained RecurrentPPO and MaskablePPO zips (saved as SB3 saves them; no training needed)."""
    import sb3_contrib
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("refused")
    paths = {}
    for name, cls, policy, env in (("recurrent", sb3_contrib.RecurrentPPO, "MlpLstmPolicy", "Pendulum-v1"),
                                   ("maskable", sb3_contrib.MaskablePPO, "MlpPolicy", "CartPole-v1")):
        model = cls(policy, env, n_steps=16, batch_size=16, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [8]})
        model.save(out / f"{name}.zip")
        paths[name] = out / f"{name}.zip"
    return paths


@pytest.mark.parametrize(("name", "algo"), [("tqc-pendulum-sde", "TQC"), ("qrdqn-cartpole", "QRDQN"),
                                            ("trpo-pendulum", "TRPO"), ("ars-linear-pendulum", "ARS"),
                                            ("crossq-pendulum", "CrossQ")])
def test_contrib_models_are_recognised_without_importing_sb3_contrib(trained_model, name, algo):
    path = trained_model(name)
    code = ("import sys; from edgekit.host.loading.model_zip import inspect_model_zip; "
            f"info = inspect_model_zip({str(path)!r}); "
            "print(info.algorithm.name, 'sb3_contrib' in sys.modules, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [algo, "False", "False"]


def test_contrib_model_without_sb3_contrib_names_the_extra(trained_model, tmp_path):
    path = trained_model("qrdqn-cartpole")
    blocker = tmp_path / "sitecustomize.py"  # makes `import sb3_contrib` fail, as where it is not installed
    blocker.write_text("import sys\nsys.modules['sb3_contrib'] = None\n")
    proc = run_cli("build", str(path), "--env", "CartPole-v1", "-o", str(tmp_path / "b"),
                   env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    _assert_one_line_error(proc, "QRDQN", "sb3-contrib is not installed", "pip install 'edgekit-sb3[contrib]'")


@pytest.mark.parametrize(("name", "reason"), [("recurrent", "LSTM state"), ("maskable", "action masks")])
def test_recurrent_and_maskable_ppo_are_refused_with_the_reason(refused_models, name, reason):
    with pytest.raises(UnsupportedModelError, match=reason):
        inspect_model_zip(refused_models[name])
    with pytest.raises(UnsupportedModelError, match=reason):
        load_agent(refused_models[name], trust_pickle=True)


def test_recurrent_ppo_cli_error_is_one_line(refused_models, tmp_path):
    proc = run_cli("build", str(refused_models["recurrent"]), "--env", "Pendulum-v1", "-o", str(tmp_path / "b"))
    _assert_one_line_error(proc, "RecurrentPPO", "LSTM state", "stateless")


def test_qrdqn_head_is_the_mean_over_quantiles(trained_model):
    """The folded head emits n_actions Q-values: exactly the mean of the quantile network's outputs."""
    import torch

    agent = load_agent(trained_model("qrdqn-cartpole"))
    actor = agent.algorithm.build_actor(agent.model.policy)
    net = agent.model.policy.quantile_net
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(64, 4)), dtype=torch.float32)
    with torch.no_grad():
        expected = net(obs).mean(dim=1)
        actual = actor(obs)
    assert actor.head.out_features == 2 and net.n_quantiles == 10
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_batch_renorm_folds_exactly_into_the_next_linear():
    """Eval-mode BatchRenorm with non-trivial statistics and affine parameters, two in a row included."""
    import torch
    from sb3_contrib.common.torch_layers import BatchRenorm1d
    from torch import nn

    from edgekit.host.actor import fold_batch_renorm

    torch.manual_seed(0)
    norms = [BatchRenorm1d(5), BatchRenorm1d(5), BatchRenorm1d(7)]
    for norm in norms:
        with torch.no_grad():
            norm.ra_mean.normal_()
            norm.ra_var.uniform_(0.1, 4.0)
            norm.scale.normal_()
            norm.bias.normal_()
    seq = nn.Sequential(norms[0], norms[1], nn.Linear(5, 7), nn.ReLU(), norms[2], nn.Linear(7, 2)).eval()
    folded = nn.Sequential(*fold_batch_renorm(seq))
    assert [type(m) for m in folded] == [nn.Linear, nn.ReLU, nn.Linear]
    x = torch.randn(256, 5)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), seq(x), rtol=1e-4, atol=1e-5)
    assert all(m.training is False for m in norms)  # the source network is left as it was


def test_crossq_actor_has_no_batch_renorm_and_matches_predict(trained_model):
    from edgekit.stages.extract import extract_policy

    agent = load_agent(trained_model("crossq-pendulum"))
    renorms = [m for m in agent.model.policy.actor.modules() if type(m).__name__ == "BatchRenorm1d"]
    assert renorms and any(float((m.ra_var - 1).abs().max()) > 1e-3 for m in renorms)  # trained statistics
    graph = extract_policy(agent)  # checks the actor against SB3's predict
    assert not any(type(m).__name__ == "BatchRenorm1d" for m in graph.module.modules())


def test_ars_linear_policy_gets_a_zero_bias(trained_model):
    agent = load_agent(trained_model("ars-linear-pendulum"))
    assert agent.policy == "LinearPolicy" and agent.model.policy.action_net[0].bias is None
    actor = agent.algorithm.build_actor(agent.model.policy)
    assert actor.head.bias is not None and float(actor.head.bias.detach().abs().max()) == 0.0
    assert agent.model.policy.action_net[0].bias is None  # the policy itself is unchanged


def test_manifests_name_the_output_each_predict_calls_for(built_bundle):
    from edgekit.bundle import Manifest

    expected = {"tqc-pendulum-sde": "squashed_actions", "qrdqn-cartpole": "q_values", "trpo-pendulum": "actions",
                "trpo-cartpole": "logits", "ars-pendulum": "squashed_actions", "ars-linear-pendulum": "actions",
                "ars-cartpole": "logits", "crossq-pendulum": "squashed_actions", "ppo-pendulum-sde": "actions",
                "a2c-pendulum-sde-squash": "squashed_actions"}
    for name, output in expected.items():
        manifest = Manifest.read(built_bundle(name).bundle_dir)
        assert manifest.output == output, name
        assert manifest.algorithm == built_bundle(name).case.algo
