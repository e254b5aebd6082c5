"""Stage: SB3 policy -> the deterministic actor as a plain torch module.

The table in ``edgekit.host.algorithms`` says how, per algorithm. This stage checks
the parts edgekit can deploy (an MLP after SB3's flatten extractor, or
``CombinedExtractor`` with one ``nn.Flatten`` per Dict key) and that the module
reproduces SB3's own ``predict`` on sample observations.

The module takes flat float features (``edgekit.core.observations``): SB3's
``preprocess_obs`` (one-hot, float cast) and the extractor's concatenation
happen before it, on the host side of the int8 input, so the extractor itself
becomes a flatten.
"""

from __future__ import annotations

import numpy as np

from edgekit.bundle.image_spec import ImageInput
from edgekit.bundle.manifest import ObsNormalization
from edgekit.core.errors import ConversionError, UnsupportedModelError
from edgekit.core.observations import ObservationEncoder
from edgekit.core.postprocess import MULTI_ARGMAX, PostProcessor, branches, postprocess_problem
from edgekit.core.spaces import DICT
from edgekit.host.algorithms import POSTPROCESS_OF_OUTPUT
from edgekit.host.loading.loaded_agent import LoadedAgent
from edgekit.stages.artifacts import PolicyGraph


def extract_policy(agent: LoadedAgent, normalize: ObsNormalization | None = None,
                   image: ImageInput | None = None) -> PolicyGraph:
    """Build the actor for ``agent`` and check it against ``model.predict``.

    ``normalize``: the VecNormalize statistics the policy was trained behind; the
    graph then takes raw observations, as the env returns them. ``image``: how
    the env's image observations reach the CnnPolicy (``stages.image_input``);
    the graph then takes them in the env's layout.
    """
    import torch

    from edgekit.host.activations import prepare_activations

    torch.set_num_threads(1)  # tiny MLPs: threads only add overhead
    policy = agent.model.policy
    policy.set_training_mode(False)
    module = agent.algorithm.build_actor(policy).eval()
    module.body, rewrites = prepare_activations(module.body)  # new modules: the SB3 policy stays as it is
    if image is not None:
        _use_channels_last_cnn(agent, module, image)
    else:
        module.features_extractor = _flat_extractor(agent, getattr(module, "features_extractor", None))
    output = agent.algorithm.output_of(policy, agent.action_space.kind)
    encoder = ObservationEncoder(agent.observation_space)
    with torch.no_grad():
        dummy = torch.zeros(1, *image.chw) if image is not None else torch.zeros(1, encoder.features)
        out_size = int(module(dummy).shape[-1])
    postprocess = POSTPROCESS_OF_OUTPUT[output]
    problem = postprocess_problem(postprocess, agent.action_space)
    if problem is not None:  # the manifest would refuse it: say so before any work
        raise UnsupportedModelError(f"the model's {problem}", hint="give the env's action space finite bounds "
                                    "(SB3 requires them) and save the model with it again")
    graph = PolicyGraph(
        module=module,
        input_size=encoder.features,
        output_size=out_size,
        output=output,
        postprocess=postprocess,
        normalize=normalize,
        image=image,
        rewrites=rewrites,
        binary_inputs=tuple(int(i) for i in np.flatnonzero(encoder.binary)),
        branches=tuple(branches(agent.action_space)) if postprocess == MULTI_ARGMAX else (),
    )
    _check_against_sb3(agent, graph, encoder)
    return graph


def _use_channels_last_cnn(agent: LoadedAgent, module: object, image: ImageInput) -> None:
    """A copy of the policy's NatureCNN with its flatten in NHWC order (``edgekit.host.cnn``); the model's own
    extractor is left as it is."""
    import copy

    from edgekit.host.cnn import flatten_channels_last, is_nature_cnn

    extractor = getattr(module, "features_extractor", None)
    if not is_nature_cnn(extractor):
        raise UnsupportedModelError(
            f"{agent.policy_class} with {type(extractor).__name__} on images is not supported "
            "(CnnPolicy with SB3's NatureCNN is)",
            hint="see docs/supported.md",
        )
    if agent.observation_space.shape != image.chw:
        raise UnsupportedModelError(f"the CnnPolicy takes {agent.observation_space.shape}, the env gives "
                                    f"{image.layout} {image.shape}")
    extractor = copy.deepcopy(extractor)
    flatten_channels_last(extractor, image.chw)
    module.features_extractor = extractor  # type: ignore[attr-defined]


def _flat_extractor(agent: LoadedAgent, extractor: object) -> object:
    """The extractor as the flat features need it: SB3's FlattenExtractor as it is, CombinedExtractor
    (Flatten per key, concatenated in the space's key order) as one flatten."""
    from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor
    from torch import nn

    if isinstance(extractor, FlattenExtractor):
        return extractor
    if isinstance(extractor, CombinedExtractor) and agent.observation_space.kind == DICT:
        keys = [key for key, _sub in agent.observation_space.spaces or ()]
        if list(extractor.extractors.keys()) == keys and \
                all(type(m) is nn.Flatten for m in extractor.extractors.values()):
            return nn.Flatten()
        raise _unsupported(agent, "CombinedExtractor with an image (CNN) key, or keys out of the space's order")
    raise _unsupported(agent, f"{type(extractor).__name__} as features extractor")


def _unsupported(agent: LoadedAgent, what: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{agent.policy_class} with {what} is not supported yet (MlpPolicy, MultiInputPolicy with vector "
        "keys, and CnnPolicy with SB3's NatureCNN on images are)",
        hint="see docs/supported.md",
    )


def _check_against_sb3(agent: LoadedAgent, graph: PolicyGraph, encoder: ObservationEncoder,
                       samples: int = 64) -> None:
    """The extracted actor must give SB3's deterministic actions (bounded sample obs)."""
    rng = np.random.default_rng(0)
    if graph.image is not None:  # random images in the env's layout; SB3's policy takes them as (C, H, W)
        obs = rng.integers(0, 256, size=(samples, *graph.image.shape), dtype=np.uint8)
        expected = agent.model.predict(graph.image.nhwc(obs).transpose(0, 3, 1, 2), deterministic=True)[0]
        features = obs.reshape(samples, -1)
    else:
        obs = encoder.sample(rng, samples)
        features, _single = encoder.encode(obs)
        seen = obs if graph.normalize is None else encoder.normalized(obs, graph.normalize)
        expected = agent.model.predict(seen, deterministic=True)[0]
    post = PostProcessor(graph.postprocess, agent.action_space)
    actual = post(graph.outputs(features))
    if graph.postprocess in ("clip", "unscale"):
        bad = int(np.sum(~np.isclose(actual, expected, atol=1e-5, rtol=1e-5)))
    else:
        bad = int(np.sum(actual != expected))
    if bad:
        raise ConversionError(
            f"the extracted {agent.algorithm.name} actor disagrees with SB3's predict on {bad} values",
            hint="this is an edgekit bug for this policy; please report it with the model",
        )
