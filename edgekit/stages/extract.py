"""Stage: SB3 policy -> the deterministic actor as a plain torch module.

The table in ``edgekit.algorithms`` says how, per algorithm. This stage checks
the parts edgekit can deploy (an MLP feature extractor) and that the module
reproduces SB3's own ``predict`` on sample observations.
"""

from __future__ import annotations

import numpy as np

from edgekit.algorithms import POSTPROCESS_OF_OUTPUT
from edgekit.artifacts import LoadedAgent, PolicyGraph
from edgekit.bundle.image import ImageInput
from edgekit.bundle.manifest import ObsNormalization
from edgekit.errors import ConversionError, UnsupportedModelError
from edgekit.postprocess import PostProcessor


def extract_policy(agent: LoadedAgent, normalize: ObsNormalization | None = None,
                   image: ImageInput | None = None) -> PolicyGraph:
    """Build the actor for ``agent`` and check it against ``model.predict``.

    ``normalize``: the VecNormalize statistics the policy was trained behind; the
    graph then takes raw observations, as the env returns them. ``image``: how
    the env's image observations reach the CnnPolicy (``stages.image_input``);
    the graph then takes them in the env's layout.
    """
    import torch
    from stable_baselines3.common.torch_layers import FlattenExtractor

    from edgekit.activations import prepare_activations

    torch.set_num_threads(1)  # tiny MLPs: threads only add overhead
    policy = agent.model.policy
    policy.set_training_mode(False)
    module = agent.algorithm.build_actor(policy).eval()
    module.body, rewrites = prepare_activations(module.body)  # new modules: the SB3 policy stays as it is
    extractor = getattr(module, "features_extractor", None)
    if image is not None:
        _use_channels_last_cnn(agent, module, image)
    elif not isinstance(extractor, FlattenExtractor):
        raise UnsupportedModelError(
            f"{agent.policy_class} with {type(extractor).__name__} is not supported "
            "(MlpPolicy on a float Box, CnnPolicy on images are)",
            hint="see the README's support table",
        )
    output = agent.algorithm.output_of(policy, agent.action_space.kind)
    size = agent.observation_space.size
    with torch.no_grad():
        dummy = torch.zeros(1, *image.chw) if image is not None else torch.zeros(1, size)
        out_size = int(module(dummy).shape[-1])
    graph = PolicyGraph(
        module=module,
        input_size=size,
        output_size=out_size,
        output=output,
        postprocess=POSTPROCESS_OF_OUTPUT[output],
        normalize=normalize,
        image=image,
        rewrites=rewrites,
    )
    _check_against_sb3(agent, graph)
    return graph


def _use_channels_last_cnn(agent: LoadedAgent, module: object, image: ImageInput) -> None:
    """A copy of the policy's NatureCNN with its flatten in NHWC order (``edgekit.cnn``); the model's own
    extractor is left as it is."""
    import copy

    from edgekit.cnn import flatten_channels_last, is_nature_cnn

    extractor = getattr(module, "features_extractor", None)
    if not is_nature_cnn(extractor):
        raise UnsupportedModelError(
            f"{agent.policy_class} with {type(extractor).__name__} on images is not supported "
            "(CnnPolicy with SB3's NatureCNN is)",
            hint="see the README's support table",
        )
    if agent.observation_space.shape != image.chw:
        raise UnsupportedModelError(f"the CnnPolicy takes {agent.observation_space.shape}, the env gives "
                                    f"{image.layout} {image.shape}")
    extractor = copy.deepcopy(extractor)
    flatten_channels_last(extractor, image.chw)
    module.features_extractor = extractor  # type: ignore[attr-defined]


def _check_against_sb3(agent: LoadedAgent, graph: PolicyGraph, samples: int = 64) -> None:
    """The extracted actor must give SB3's deterministic actions (bounded sample obs)."""
    space = agent.observation_space
    rng = np.random.default_rng(0)
    if graph.image is not None:  # random images in the env's layout; SB3's policy takes them as (C, H, W)
        obs = rng.integers(0, 256, size=(samples, *graph.image.shape), dtype=np.uint8)
        expected = agent.model.predict(graph.image.nhwc(obs).transpose(0, 3, 1, 2), deterministic=True)[0]
    else:
        low = np.clip(space.low_array(), -10, 10)
        high = np.clip(space.high_array(), -10, 10)
        obs = rng.uniform(low, high, size=(samples, *space.shape)).astype(np.float32)
        seen = obs if graph.normalize is None else \
            graph.normalize.apply(obs.reshape(samples, -1)).reshape(obs.shape)
        expected = agent.model.predict(seen.astype(np.float32), deterministic=True)[0]
    post = PostProcessor(graph.postprocess, agent.action_space)
    actual = post(graph.outputs(obs.reshape(samples, -1)))
    if graph.postprocess == "argmax":
        bad = int(np.sum(actual != expected))
    else:
        bad = int(np.sum(~np.isclose(actual, expected, atol=1e-5, rtol=1e-5)))
    if bad:
        raise ConversionError(
            f"the extracted {agent.algorithm.name} actor disagrees with SB3's predict on {bad} values",
            hint="this is an edgekit bug for this policy; please report it with the model",
        )
