"""Networks: the segmenter G = C o F (DeepLab-v2 ResNet-101 or a small CPU net) and D.

``build_segmenter`` and ``build_discriminator`` take plain arguments, never a config;
``segmenter_from_config`` is the one place a ``ModelConfig`` becomes those arguments.
"""

from __future__ import annotations

from simtune.errors import ConfigError
from simtune.models.deeplab import ASPP, FrozenBatchNorm2d, SegOutput, Segmenter, build_deeplab_v2
from simtune.models.discriminator import Discriminator, build_discriminator
from simtune.models.small import build_small_segmenter
from simtune.models.weights import (LoadReport, count_parameters, load_init_weights, load_module_state, load_trained,
                                    read_state_dict)
from simtune.schema import ModelConfig

BACKBONES = ("resnet101", "small")

__all__ = [
    "ASPP",
    "BACKBONES",
    "Discriminator",
    "FrozenBatchNorm2d",
    "LoadReport",
    "SegOutput",
    "Segmenter",
    "build_discriminator",
    "build_segmenter",
    "count_parameters",
    "load_init_weights",
    "load_module_state",
    "load_trained",
    "read_state_dict",
    "segmenter_from_config",
]


def build_segmenter(backbone: str, num_classes: int = 19, *, aspp_all_branches: bool = True,
                    multi_level: bool = False, width: int = 32) -> Segmenter:
    """A freshly initialised segmenter.

    Args:
        backbone: "resnet101" (DeepLab-v2, 2048 feature channels, frozen BN) or "small"
            (CPU net, ``8 * width`` feature channels, GroupNorm).
        num_classes: K, the number of output classes.
        aspp_all_branches: sum all four ASPP branches; False sums only the first two, as
            the authors' code does.
        multi_level: add the AdaptSegNet head on res4 (``SegOutput.aux_logits``).
        width: channels of the small backbone's first stage (ignored for "resnet101").
    """
    if backbone == "resnet101":
        return build_deeplab_v2(num_classes, aspp_all_branches=aspp_all_branches, multi_level=multi_level)
    if backbone == "small":
        return build_small_segmenter(num_classes, width=width, aspp_all_branches=aspp_all_branches,
                                     multi_level=multi_level)
    raise ConfigError(f"backbone must be one of {BACKBONES}, but got backbone={backbone!r}")


def segmenter_from_config(model: ModelConfig) -> Segmenter:
    """A freshly initialised segmenter as ``model`` describes it; ``model.init_weights`` is not read.

    Everything that rebuilds a run's network from its config goes through here, so a new
    model field reaches training, the registered model and the figures alike.
    """
    return build_segmenter(model.backbone, model.num_classes, aspp_all_branches=model.aspp_all_branches,
                           multi_level=model.multi_level, width=model.width)
