"""Stage helper: how the env's image observations reach a CnnPolicy (``edgekit.bundle.image_spec``).

Decided from facts, not guessed: the layout is the one the env's observation
space has (the same (C, H, W) as the policy's, or (H, W, C), which SB3 wrapped
in ``VecTransposeImage``), and the divisor is the policy's ``normalize_images``.
"""

from __future__ import annotations

from typing import Any

from edgekit.bundle.image_spec import HWC, ImageInput, env_layout
from edgekit.core.env_spec import EnvSpec
from edgekit.core.errors import EnvironmentMismatchError, UnsupportedModelError
from edgekit.core.spaces import IMAGE, observation_kind
from edgekit.host.gym_envs import make_env, space_spec
from edgekit.host.loading.loaded_agent import LoadedAgent


def image_input_for(agent: LoadedAgent, env_spec: EnvSpec | str) -> ImageInput | None:
    """The ``ImageInput`` of an image agent in that env; None for other observations."""
    if observation_kind(agent.observation_space) != IMAGE:
        return None
    env = make_env(env_spec)
    env_id = env_spec.id if isinstance(env_spec, EnvSpec) else env_spec
    try:
        env_space = space_spec(env.observation_space, "observation")
    finally:
        env.close()
    layout = env_layout(agent.observation_space.shape, env_space.shape)
    if layout is None or observation_kind(env_space) != IMAGE:
        raise EnvironmentMismatchError(
            f"the model was trained on images {agent.observation_space.describe()} (channel-first, as SB3 stores "
            f"them) but {env_id} returns {env_space.describe()} {env_space.dtype}",
            hint="pass the --env the model was trained on, with the same wrappers (frame stacking included)",
        )
    return ImageInput(layout=layout, shape=env_space.shape, divisor=_divisor(agent.model.policy),
                      transposed=layout == HWC)


def _divisor(policy: Any) -> float:
    """255 when SB3 divides the images by 255 before the CNN (``normalize_images``, the default), else 1."""
    flag = getattr(policy, "normalize_images", True)
    if not isinstance(flag, bool):
        raise UnsupportedModelError(f"the policy's normalize_images is {flag!r}, not a bool")
    return 255.0 if flag else 1.0
