"""THE per-algorithm table: how to recognise, load and extract each algorithm.

Everything algorithm-specific lives here and nowhere else. Each row says

* how to recognise a model from its saved ``data`` JSON (no unpickling),
* which SB3 class loads it,
* how to build the deterministic actor — the torch path that
  ``policy.predict(obs, deterministic=True)`` takes — and what its raw output
  means, which fixes the post-processing (see ``edgekit.postprocess``).

torch and SB3 are imported inside the extraction functions only, so reading
the table (e.g. for ``--help`` or detection) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgekit.errors import UnsupportedModelError
from edgekit.postprocess import ARGMAX, CLIP, MULTI_ARGMAX, THRESHOLD, UNSCALE
from edgekit.spaces import BOX, DISCRETE, MULTI_BINARY, MULTI_DISCRETE

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

# SB3 policy aliases edgekit deploys, for every algorithm (see edgekit.support for what each takes)
POLICIES = ("MlpPolicy", "MultiInputPolicy")


@dataclass(frozen=True)
class AlgorithmSpec:
    """One row of the table."""

    name: str
    sb3_class: str  # attribute of the ``stable_baselines3`` package
    action_kinds: tuple[str, ...]  # supported action space kinds (edgekit.spaces)
    build_actor: Callable[[Any], torch.nn.Module]
    output_of: Callable[[Any, str], str]  # (policy, action kind) -> output meaning
    summary: str
    policies: tuple[str, ...] = POLICIES  # SB3 policy aliases edgekit deploys (see edgekit.support)

    def load_class(self) -> type:
        """The SB3 algorithm class (imports SB3)."""
        import stable_baselines3

        return getattr(stable_baselines3, self.sb3_class)

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
    from edgekit.actor import DeterministicActor

    return DeterministicActor(policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net,
                              squash=bool(policy.squash_output))


def _sac_actor(policy: Any) -> torch.nn.Module:
    """SACPolicy._predict -> actor(obs, deterministic=True) = tanh(mu(latent_pi(features)))."""
    from torch import nn

    from edgekit.actor import DeterministicActor

    actor = policy.actor
    mu, clip = actor.mu, None
    if isinstance(mu, nn.Sequential):  # gSDE: Sequential(Linear, Hardtanh(-clip_mean, clip_mean))
        if len(mu) != 2 or not isinstance(mu[0], nn.Linear) or not isinstance(mu[1], nn.Hardtanh) \
                or mu[1].min_val != -mu[1].max_val:
            raise ValueError("unexpected SAC mean network")
        mu, clip = mu[0], float(mu[1].max_val)
    result = DeterministicActor(actor.features_extractor, actor.latent_pi, mu, squash=True)
    result.pre_clip = clip
    return result


def _td3_actor(policy: Any) -> torch.nn.Module:
    """TD3Policy._predict -> actor(obs) = mu(features); mu is an MLP ending in Linear, Tanh."""
    from torch import nn

    from edgekit.actor import DeterministicActor, split_sequential

    body, head = split_sequential(policy.actor.mu, drop_trailing=nn.Tanh)
    return DeterministicActor(policy.actor.features_extractor, body, head, squash=True)


def _dqn_actor(policy: Any) -> torch.nn.Module:
    """DQNPolicy._predict -> q_net(obs).argmax(dim=1): export the Q-values."""
    from edgekit.actor import DeterministicActor, split_sequential

    body, head = split_sequential(policy.q_net.q_net)
    return DeterministicActor(policy.q_net.features_extractor, body, head, squash=False)


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


_ON_POLICY_ACTIONS = (BOX, DISCRETE, MULTI_DISCRETE, MULTI_BINARY)

ALGORITHMS: Mapping[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("PPO", "PPO", _ON_POLICY_ACTIONS, _actor_critic_actor, _actor_critic_output,
                      "on-policy actor-critic; Gaussian mean (clipped), categorical argmax (per branch), "
                      "Bernoulli logit > 0"),
        AlgorithmSpec("A2C", "A2C", _ON_POLICY_ACTIONS, _actor_critic_actor, _actor_critic_output,
                      "on-policy actor-critic; Gaussian mean (clipped), categorical argmax (per branch), "
                      "Bernoulli logit > 0"),
        AlgorithmSpec("SAC", "SAC", (BOX,), _sac_actor, _always(SQUASHED_ACTIONS),
                      "off-policy; tanh-squashed Gaussian mean, unscaled to the bounds"),
        AlgorithmSpec("TD3", "TD3", (BOX,), _td3_actor, _always(SQUASHED_ACTIONS),
                      "off-policy; deterministic tanh actor, unscaled to the bounds"),
        AlgorithmSpec("DDPG", "DDPG", (BOX,), _td3_actor, _always(SQUASHED_ACTIONS),
                      "off-policy; deterministic tanh actor, unscaled to the bounds"),
        AlgorithmSpec("DQN", "DQN", (DISCRETE,), _dqn_actor, _always(Q_VALUES),
                      "off-policy; greedy argmax of the Q-values"),
    )
}

SUPPORTED = tuple(ALGORITHMS)

# Policy modules of algorithms that edgekit recognises but does not deploy yet.
_KNOWN_UNSUPPORTED = {
    "sb3_contrib.qrdqn": "QR-DQN",
    "sb3_contrib.tqc": "TQC",
    "sb3_contrib.trpo": "TRPO",
    "sb3_contrib.ars": "ARS",
    "sb3_contrib.crossq": "CrossQ",
    "sb3_contrib.ppo_recurrent": "RecurrentPPO",
    "sb3_contrib.common.recurrent": "RecurrentPPO",
    "sb3_contrib.ppo_mask": "MaskablePPO",
    "sb3_contrib.common.maskable": "MaskablePPO",
}


def detect_algorithm(data: Mapping[str, Any]) -> AlgorithmSpec:
    """Name the algorithm from a model's ``data`` JSON, without unpickling.

    The policy class's module says the family; PPO and A2C share a policy
    class and differ by their hyper-parameters, as do TD3 and DDPG (DDPG is
    TD3 with ``policy_delay=1`` and no target-policy smoothing).
    """
    policy_class = data.get("policy_class")
    module = policy_class.get("__module__", "") if isinstance(policy_class, Mapping) else ""
    for prefix, name in _KNOWN_UNSUPPORTED.items():
        if module.startswith(prefix):
            raise _unsupported(f"the model is a {name} agent (sb3-contrib)")
    if module.startswith("stable_baselines3.dqn"):
        return ALGORITHMS["DQN"]
    if module.startswith("stable_baselines3.sac"):
        return ALGORITHMS["SAC"]
    if module.startswith("stable_baselines3.td3"):
        is_ddpg = data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0
        return ALGORITHMS["DDPG" if is_ddpg else "TD3"]
    if module.startswith("stable_baselines3.common.policies"):
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
        f"{reason}; edgekit supports {', '.join(SUPPORTED)} from stable-baselines3",
        hint="retrain or save the agent with one of the supported algorithms",
    )
