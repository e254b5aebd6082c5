"""THE per-algorithm table: how to recognise, load and extract each algorithm.

Everything algorithm-specific lives here and nowhere else. Each row says

* how to recognise a model from its saved ``data`` JSON (no unpickling),
* which SB3 class loads it,
* how to build the deterministic actor — the torch path that
  ``policy.predict(obs, deterministic=True)`` takes — and what its raw output
  means, which fixes the post-processing (see ``edgekit.core.postprocess``).

torch and SB3 are imported inside the extraction functions only, so reading
the table (e.g. for ``--help`` or detection) stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgekit.core.errors import MissingDependencyError, ModelFileError, UnsupportedModelError
from edgekit.core.postprocess import ARGMAX, CLIP, MULTI_ARGMAX, THRESHOLD, UNSCALE
from edgekit.core.spaces import BOX, DISCRETE, MULTI_BINARY, MULTI_DISCRETE

if TYPE_CHECKING:
    import torch

# What the raw network output means, and the post-processing it calls for.
ACTIONS = "actions"  # Gaussian mean, clipped to the Box (PPO, A2C)
SQUASHED_ACTIONS = "squashed_actions"  # tanh output in [-1, 1], unscaled to the Box
LOGITS = "logits"  # categorical logits, argmax (PPO, A2C on Discrete)
Q_VALUES = "q_values"  # greedy action, argmax (DQN)
MULTI_LOGITS = "multi_logits"  # one categorical per MultiDiscrete branch, per-branch argmax (PPO, A2C)
BERNOULLI_LOGITS = "bernoulli_logits"  # one Bernoulli logit per MultiBinary output, > 0 (PPO, A2C)

POSTPROCESS_OF_OUTPUT: Mapping[str, str] = {
    ACTIONS: CLIP,
    SQUASHED_ACTIONS: UNSCALE,
    LOGITS: ARGMAX,
    Q_VALUES: ARGMAX,
    MULTI_LOGITS: MULTI_ARGMAX,
    BERNOULLI_LOGITS: THRESHOLD,
}


@dataclass(frozen=True)
class AlgorithmSpec:
    """One row of the table."""

    name: str
    sb3_class: str  # attribute of the ``package`` (stable_baselines3 or sb3_contrib)
    action_kinds: tuple[str, ...]  # supported action space kinds (edgekit.core.spaces)
    build_actor: Callable[[Any], torch.nn.Module]
    output_of: Callable[[Any, str], str]  # (policy, action kind) -> output meaning
    summary: str
    policies: tuple[str, ...] = ("MlpPolicy",)  # SB3 policy aliases edgekit deploys (see edgekit.host.support_matrix)
    package: str = "stable_baselines3"
    # How the algorithm's _setup_model builds its policy: (obs space, action space, lr_schedule, **kwargs),
    # or without the schedule (ARS, which has no optimizer).
    policy_takes_schedule: bool = True

    def load_class(self) -> type:
        """The algorithm class (imports SB3, or sb3-contrib for its algorithms)."""
        import importlib

        try:
            module = importlib.import_module(self.package)
        except ImportError:
            if self.package != CONTRIB:
                raise
            raise MissingDependencyError(
                f"the model is a {self.name} agent, an sb3-contrib algorithm, and sb3-contrib is not installed",
                hint="pip install 'edgekit-sb3[contrib]'",
            ) from None
        return getattr(module, self.sb3_class)

    def policy_alias(self, policy: Any) -> str:
        """The alias (``MlpPolicy``, ``CnnPolicy``...) under which SB3 names this policy's class."""
        aliases = getattr(self.load_class(), "policy_aliases", {})
        for alias, cls in aliases.items():
            if type(policy) is cls:
                return alias
        return type(policy).__name__


# --- actors: each mirrors the deterministic branch of the policy's _predict ---


def _actor_critic_actor(policy: Any) -> torch.nn.Module:
    """ActorCriticPolicy._predict: action_net(mlp_extractor.forward_actor(features)), the
    Gaussian/gSDE mean (tanh-squashed with squash_output) or the categorical logits."""
    from edgekit.host.actor import DeterministicActor

    return DeterministicActor(policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net,
                              squash=bool(policy.squash_output))


def _sac_actor(policy: Any) -> torch.nn.Module:
    """SACPolicy._predict -> actor(obs, deterministic=True) = tanh(mu(latent_pi(features))); TQC's actor is
    the same network."""
    from edgekit.host.actor import DeterministicActor

    actor = policy.actor
    mu, clip = _sac_mean(actor.mu)
    result = DeterministicActor(actor.features_extractor, actor.latent_pi, mu, squash=True)
    result.pre_clip = clip
    return result


def _sac_mean(mu: Any) -> tuple[Any, float | None]:
    """SAC/TQC/CrossQ's mean layer and gSDE's clip: Sequential(Linear, Hardtanh(-clip_mean, clip_mean))."""
    from torch import nn

    if not isinstance(mu, nn.Sequential):
        return mu, None
    if len(mu) != 2 or not isinstance(mu[0], nn.Linear) or not isinstance(mu[1], nn.Hardtanh) \
            or mu[1].min_val != -mu[1].max_val:
        raise ValueError("unexpected SAC mean network")
    return mu[0], float(mu[1].max_val)


def _td3_actor(policy: Any) -> torch.nn.Module:
    """TD3Policy._predict -> actor(obs) = mu(features); mu is an MLP ending in Linear, Tanh."""
    from torch import nn

    from edgekit.host.actor import DeterministicActor, split_sequential

    body, head = split_sequential(policy.actor.mu, drop_trailing=nn.Tanh)
    return DeterministicActor(policy.actor.features_extractor, body, head, squash=True)


def _dqn_actor(policy: Any) -> torch.nn.Module:
    """DQNPolicy._predict -> q_net(obs).argmax(dim=1): export the Q-values."""
    from edgekit.host.actor import DeterministicActor, split_sequential

    body, head = split_sequential(policy.q_net.q_net)
    return DeterministicActor(policy.q_net.features_extractor, body, head, squash=False)


def _qrdqn_actor(policy: Any) -> torch.nn.Module:
    """QuantileNetwork._predict -> quantiles.view(-1, n_quantiles, n_actions).mean(dim=1).argmax(dim=1).

    The mean over quantiles is linear, so it is folded exactly into the last Linear: the head emits the
    Q-values directly (n_actions outputs instead of n_quantiles * n_actions).
    """
    from edgekit.host.actor import DeterministicActor, mean_over_quantiles, split_sequential

    net = policy.quantile_net
    body, head = split_sequential(net.quantile_net)
    return DeterministicActor(net.features_extractor, body,
                              mean_over_quantiles(head, net.n_quantiles, int(net.action_space.n)), squash=False)


def _ars_actor(policy: Any) -> torch.nn.Module:
    """ARSPolicy.forward -> action_net(features): an MLP ending in Tanh when squashing a Box action (then
    unscaled), else in Linear (Box: clipped; Discrete: argmax of its outputs). Layers without a bias
    (``with_bias=False``, ARSLinearPolicy's default) get a zero one, so conditioning can fold into it."""
    from torch import nn

    from edgekit.host.actor import DeterministicActor, split_sequential, with_biases

    squash = bool(policy.squash_output)
    body, head = split_sequential(with_biases(policy.action_net), drop_trailing=nn.Tanh if squash else None)
    return DeterministicActor(policy.features_extractor, body, head, squash=squash)


def _crossq_actor(policy: Any) -> torch.nn.Module:
    """CrossQ's actor is SAC's with BatchRenorm before each Linear; in eval mode (predict) a BatchRenorm is
    the affine map of its running statistics, folded exactly into the Linear it feeds."""
    from torch import nn

    from edgekit.host.actor import DeterministicActor, fold_batch_renorm

    actor = policy.actor
    mu, clip = _sac_mean(actor.mu)
    layers = fold_batch_renorm(nn.Sequential(*actor.latent_pi, mu))
    result = DeterministicActor(actor.features_extractor, nn.Sequential(*layers[:-1]), layers[-1], squash=True)
    result.pre_clip = clip
    return result


def _actor_critic_output(policy: Any, action_kind: str) -> str:
    """The distribution SB3 makes for the action space (``make_proba_distribution``): its mode's input."""
    if action_kind == DISCRETE:
        return LOGITS
    if action_kind == MULTI_DISCRETE:
        return MULTI_LOGITS
    if action_kind == MULTI_BINARY:
        return BERNOULLI_LOGITS
    return SQUASHED_ACTIONS if policy.squash_output else ACTIONS


def _always(output: str) -> Callable[[Any, str], str]:
    return lambda _policy, _kind: output


# SB3 policy aliases edgekit deploys for every SB3 algorithm (see edgekit.host.support_matrix for what each takes);
# sb3-contrib rows: MlpPolicy (the default), ARS's LinearPolicy, TQC's MultiInputPolicy.
_SB3_POLICIES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
_ON_POLICY_ACTIONS = (BOX, DISCRETE, MULTI_DISCRETE, MULTI_BINARY)
CONTRIB = "sb3_contrib"

ALGORITHMS: Mapping[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("PPO", "PPO", _ON_POLICY_ACTIONS, _actor_critic_actor, _actor_critic_output,
                      "on-policy actor-critic; Gaussian mean (clipped), categorical argmax (per branch), "
                      "Bernoulli logit > 0", _SB3_POLICIES),
        AlgorithmSpec("A2C", "A2C", _ON_POLICY_ACTIONS, _actor_critic_actor, _actor_critic_output,
                      "on-policy actor-critic; Gaussian mean (clipped), categorical argmax (per branch), "
                      "Bernoulli logit > 0", _SB3_POLICIES),
        AlgorithmSpec("SAC", "SAC", (BOX,), _sac_actor, _always(SQUASHED_ACTIONS),
                      "off-policy; tanh-squashed Gaussian mean, unscaled to the bounds", _SB3_POLICIES),
        AlgorithmSpec("TD3", "TD3", (BOX,), _td3_actor, _always(SQUASHED_ACTIONS),
                      "off-policy; deterministic tanh actor, unscaled to the bounds", _SB3_POLICIES),
        AlgorithmSpec("DDPG", "DDPG", (BOX,), _td3_actor, _always(SQUASHED_ACTIONS),
                      "off-policy; deterministic tanh actor, unscaled to the bounds", _SB3_POLICIES),
        AlgorithmSpec("DQN", "DQN", (DISCRETE,), _dqn_actor, _always(Q_VALUES),
                      "off-policy; greedy argmax of the Q-values", _SB3_POLICIES),
        # sb3-contrib (the `contrib` extra): recognised without it, loaded only with it
        AlgorithmSpec("TQC", "TQC", (BOX,), _sac_actor, _always(SQUASHED_ACTIONS),
                      "off-policy (sb3-contrib); SAC's tanh-squashed Gaussian mean, unscaled to the bounds",
                      policies=("MlpPolicy", "MultiInputPolicy"), package=CONTRIB),  # Dict: the RL Zoo's HER agents
        AlgorithmSpec("QRDQN", "QRDQN", (DISCRETE,), _qrdqn_actor, _always(Q_VALUES),
                      "off-policy (sb3-contrib); greedy argmax of the mean over quantiles", package=CONTRIB),
        AlgorithmSpec("TRPO", "TRPO", (BOX, DISCRETE), _actor_critic_actor, _actor_critic_output,
                      "on-policy (sb3-contrib), SB3's actor-critic policy; Gaussian mean (clipped) or argmax",
                      package=CONTRIB),
        # ARS's outputs mean what an actor-critic's do: argmax on Discrete, tanh-unscaled or clipped on a Box
        AlgorithmSpec("ARS", "ARS", (BOX, DISCRETE), _ars_actor, _actor_critic_output,
                      "random search (sb3-contrib); MLP or linear policy, tanh-unscaled or clipped, or argmax",
                      policies=("MlpPolicy", "LinearPolicy"), package=CONTRIB, policy_takes_schedule=False),
        AlgorithmSpec("CrossQ", "CrossQ", (BOX,), _crossq_actor, _always(SQUASHED_ACTIONS),
                      "off-policy (sb3-contrib); SAC's actor with BatchRenorm (folded), unscaled to the bounds",
                      package=CONTRIB),
    )
}

SUPPORTED = tuple(ALGORITHMS)

# Policy modules of the sb3-contrib algorithms edgekit deploys (the rest of the table is recognised below).
_CONTRIB_MODULES = {
    "sb3_contrib.tqc": "TQC",
    "sb3_contrib.qrdqn": "QRDQN",
    "sb3_contrib.ars": "ARS",
    "sb3_contrib.crossq": "CrossQ",
}

# Policy modules of algorithms that edgekit recognises but does not deploy, and why.
_RECURRENT = ("its LSTM state must be carried between steps and reset at episode starts, and the int8 model "
              "and the runtime are stateless")
_MASKABLE = "its action masks are a per-step input that the int8 model and the runtime's predict(obs) do not take"
_KNOWN_UNSUPPORTED = {
    "sb3_contrib.ppo_recurrent": ("RecurrentPPO", _RECURRENT),
    "sb3_contrib.common.recurrent": ("RecurrentPPO", _RECURRENT),
    "sb3_contrib.ppo_mask": ("MaskablePPO", _MASKABLE),
    "sb3_contrib.common.maskable": ("MaskablePPO", _MASKABLE),
}


def detect_algorithm(data: Mapping[str, Any]) -> AlgorithmSpec:
    """Name the algorithm from a model's ``data`` JSON, without unpickling.

    The policy class's module says the family; PPO, A2C and TRPO (sb3-contrib,
    which reuses SB3's policy) share a policy class and differ by their
    hyper-parameters, as do TD3 and DDPG (DDPG is TD3 with ``policy_delay=1``
    and no target-policy smoothing). Nothing is imported: sb3-contrib models
    are recognised without sb3-contrib installed (loading them needs it).
    """
    policy_class = data.get("policy_class")
    module = policy_class.get("__module__", "") if isinstance(policy_class, Mapping) else ""
    if not isinstance(module, str):  # the data JSON is the file's word, typed by nobody
        raise ModelFileError(f"the model's data names its policy class's module as {json.dumps(module)[:40]}, "
                             "not a module name", hint="pass the .zip SB3's model.save wrote (its data was edited)")
    for prefix, (name, reason) in _KNOWN_UNSUPPORTED.items():
        if module.startswith(prefix):
            raise _unsupported(f"the model is a {name} agent (sb3-contrib), which edgekit does not deploy: {reason}")
    for prefix, name in _CONTRIB_MODULES.items():
        if module.startswith(prefix):
            return ALGORITHMS[name]
    if module.startswith("stable_baselines3.dqn"):
        return ALGORITHMS["DQN"]
    if module.startswith("stable_baselines3.sac"):
        return ALGORITHMS["SAC"]
    if module.startswith("stable_baselines3.td3"):
        is_ddpg = data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0
        return ALGORITHMS["DDPG" if is_ddpg else "TD3"]
    if module.startswith(("stable_baselines3.common.policies", "sb3_contrib.trpo")):
        if "cg_max_steps" in data or "n_critic_updates" in data:  # TRPO's conjugate-gradient settings
            return ALGORITHMS["TRPO"]
        is_ppo = "n_epochs" in data or "clip_range" in data
        return ALGORITHMS["PPO" if is_ppo else "A2C"]
    what = f"policy module {module!r}" if module else "no recognisable policy class"
    raise _unsupported(f"cannot tell the algorithm of this model ({what})")


def policy_class_name(data: Mapping[str, Any]) -> str:
    """The saved policy class's name, read from the repr of its ``__init__``."""
    policy_class = data.get("policy_class")
    if isinstance(policy_class, Mapping):
        init = str(policy_class.get("__init__", ""))
        if init.startswith("<function ") and "." in init:
            return init.split()[1].split(".")[0]
    return "unknown"


def _unsupported(reason: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{reason}; edgekit supports {', '.join(_names(None))} from stable-baselines3 and "
        f"{', '.join(_names(CONTRIB))} from sb3-contrib",
        hint="retrain or save the agent with one of the supported algorithms",
    )


def _names(package: str | None) -> list[str]:
    return [n for n, spec in ALGORITHMS.items() if (spec.package == CONTRIB) == (package == CONTRIB)]
