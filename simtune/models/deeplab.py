"""DeepLab-v2 segmenter G = C o F: a dilated ResNet-101 backbone and an ASPP classifier.

The pieces shared with the small CPU network (``SegOutput``, ``ASPP``, ``Backbone``,
``Segmenter``) live here too, since the small network is a scaled-down DeepLab-v2.

Layout of the ResNet-101 (SIM spec, "Networks"):

- conv1 + res2..res5 (torchvision names ``conv1``, ``bn1``, ``layer1``..``layer4``), no fc.
- res4 (``layer3``) has stride 1 and dilation 2 in *every* block, res5 (``layer4``) stride 1
  and dilation 4 in every block, as in the Caffe DeepLab model (torchvision's
  ``replace_stride_with_dilation`` would keep the old dilation in each stage's first block).
  Output stride is 8.
- Every BatchNorm is a ``FrozenBatchNorm2d``: batch size is 1, so batch statistics are
  meaningless; affine parameters and running statistics come from the init weights.
- Stride placement in res3's first block: torchvision's ImageNet weights were trained with
  the stride in the 3x3 conv, the authors' Caffe DeepLab weights with the stride in the
  first 1x1 conv and a ceil-mode max-pool. ``ResNet101Backbone.set_caffe_layout`` switches
  between the two; ``load_init_weights`` picks the one the weight file was trained with.
  Feature size is ceil(H/8) in the torchvision layout, floor(H/8) + 1 in the Caffe layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simtune.errors import ConfigError

DEEPLAB_RATES = (6, 12, 18, 24)  # ASPP dilation rates of DeepLab-v2
RESNET101_BLOCKS = (3, 4, 23, 3)  # bottleneck blocks in res2..res5
ASPP_INIT_STD = 0.01  # DeepLab-v2 initialises the classifier weights with N(0, 0.01)


@dataclass
class SegOutput:
    """What one forward pass of a ``Segmenter`` returns (all at output stride 8).

    Attributes:
        features: ``(N, C_feat, h, w)`` backbone output f used for feature matching.
        logits: ``(N, K, h, w)`` main classifier output C(f).
        aux_logits: ``(N, K, h, w)`` output of the multi-level head on res4, or None.
    """

    features: Tensor
    logits: Tensor
    aux_logits: Tensor | None


class ASPP(nn.Module):
    """DeepLab-v2 classifier: parallel dilated 3x3 convolutions whose outputs are summed.

    With ``all_branches=False`` the forward pass stops after the second branch, as the
    authors' code does (a known bug: only the first two rates are summed). The unused
    branches keep their parameters so that parameter counts and checkpoints match.
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int], *,
                 all_branches: bool = True) -> None:
        super().__init__()
        if len(rates) < 2:
            raise ConfigError(f"ASPP needs at least 2 rates, but got rates={tuple(rates)}")
        self.rates = tuple(rates)
        self.all_branches = all_branches
        convs = [nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates]
        for conv in convs:
            nn.init.normal_(conv.weight, 0.0, ASPP_INIT_STD)
            assert conv.bias is not None  # built with bias=True
            nn.init.zeros_(conv.bias)
        self.branches = nn.ModuleList(convs)

    def forward(self, x: Tensor) -> Tensor:
        """Sum of the branch outputs.

        Args:
            x: ``(N, C, h, w)`` features; ``(M, C, 1, 1)`` pooled vectors work too, since a
                dilated 3x3 conv with padding = dilation only sees its centre tap there.
        Returns:
            ``(N, K, h, w)`` logits.
        """
        used = self.branches if self.all_branches else self.branches[:2]
        out = used[0](x)
        for conv in used[1:]:
            out = out + conv(x)
        return out


class Backbone(nn.Module):
    """Feature extractor at output stride 8; ``forward`` returns ``(mid, out)``.

    ``mid`` is the stage before the last (res4 for ResNet-101, ``mid_channels`` wide) that
    feeds the multi-level head; ``out`` (``out_channels`` wide) is the feature map f.
    """

    mid_channels: int
    out_channels: int


class Segmenter(nn.Module):
    """G = C o F: a stride-8 backbone, an ASPP classifier and an optional res4 head."""

    def __init__(self, name: str, backbone: Backbone, num_classes: int, rates: Sequence[int], *,
                 aspp_all_branches: bool = True, multi_level: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, but got num_classes={num_classes}")
        self.name = name
        self.num_classes = num_classes
        self.feature_channels = backbone.out_channels
        self.backbone = backbone
        self.classifier = ASPP(backbone.out_channels, num_classes, rates, all_branches=aspp_all_branches)
        self.aux_classifier: ASPP | None = None
        if multi_level:
            self.aux_classifier = ASPP(backbone.mid_channels, num_classes, rates,
                                       all_branches=aspp_all_branches)

    def forward(self, x: Tensor) -> SegOutput:
        """Segment a batch of images.

        Args:
            x: ``(N, 3, H, W)`` normalised images.
        Returns:
            ``SegOutput`` with features ``(N, C_feat, h, w)``, logits and aux logits
            ``(N, K, h, w)``, where h, w are about H/8, W/8.
        """
        mid, features = self.backbone(x)
        aux = self.aux_classifier(mid) if self.aux_classifier is not None else None
        return SegOutput(features=features, logits=self.classifier(features), aux_logits=aux)

    def classify(self, features: Tensor) -> Tensor:
        """Apply the main classifier C to features ``(N, C_feat, h, w)`` or ``(M, C_feat, 1, 1)``.

        Returns:
            ``(N, K, h, w)`` (or ``(M, K, 1, 1)``) logits.
        """
        return self.classifier(features)

    def head_modules(self) -> list[nn.Module]:
        """The classifier heads, which train at ``head_lr_mult`` times the backbone's lr."""
        heads: list[nn.Module] = [self.classifier]
        if self.aux_classifier is not None:
            heads.append(self.aux_classifier)
        return heads

    def param_groups(self, lr: float, head_lr_mult: float = 10.0) -> list[dict[str, Any]]:
        """Optimizer parameter groups: backbone at ``lr``, classifier head(s) at ``lr * head_lr_mult``.

        Only parameters with ``requires_grad`` are listed (frozen BN affines are not); empty
        groups are left out. Each group carries ``initial_lr`` for the poly schedule and a
        ``name`` ("backbone" or "head").
        """
        if lr < 0 or head_lr_mult < 0:
            raise ConfigError(f"lr >= 0 and head_lr_mult >= 0 must hold, but got lr={lr}, "
                              f"head_lr_mult={head_lr_mult}")
        head_ids = {id(p) for m in self.head_modules() for p in m.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            ("backbone", [p for p in trainable if id(p) not in head_ids], lr),
            ("head", [p for p in trainable if id(p) in head_ids], lr * head_lr_mult),
        ]
        return [{"name": name, "params": params, "lr": group_lr, "initial_lr": group_lr}
                for name, params, group_lr in groups if params]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm that always normalises with its stored statistics and never updates them.

    Names (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``)
    match ``nn.BatchNorm2d`` so torchvision and DeepLab state dicts load unchanged. The
    affine parameters stay ``nn.Parameter`` (with ``requires_grad=False``) so parameter
    counts match the published architecture.
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(num_features), requires_grad=False)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``(N, C, H, W)`` with the stored statistics, in train and eval mode alike."""
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, dilated 3x3, 1x1; expansion 4) with frozen BN."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                FrozenBatchNorm2d(out_channels),
            )

    def set_stride_in_1x1(self, enabled: bool) -> None:
        """Put this block's stride on ``conv1`` (Caffe) or on ``conv2`` (torchvision)."""
        self.conv1.stride = (self.stride, self.stride) if enabled else (1, 1)
        self.conv2.stride = (1, 1) if enabled else (self.stride, self.stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W)`` -> ``(N, 4 * planes, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _bottleneck_stage(in_channels: int, planes: int, blocks: int, stride: int,
                      dilation: int) -> nn.Sequential:
    """``blocks`` bottlenecks; the first one changes stride and width, all share ``dilation``."""
    layers = [Bottleneck(in_channels, planes, stride, dilation)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet101Backbone(Backbone):
    """Dilated ResNet-101 (conv1, res2..res5) at output stride 8, frozen BN throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.mid_channels = 1024
        self.out_channels = 2048
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _bottleneck_stage(64, 64, RESNET101_BLOCKS[0], stride=1, dilation=1)
        self.layer2 = _bottleneck_stage(256, 128, RESNET101_BLOCKS[1], stride=2, dilation=1)
        self.layer3 = _bottleneck_stage(512, 256, RESNET101_BLOCKS[2], stride=1, dilation=2)
        self.layer4 = _bottleneck_stage(1024, 512, RESNET101_BLOCKS[3], stride=1, dilation=4)
        self.caffe_layout = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def set_caffe_layout(self, enabled: bool) -> None:
        """Caffe DeepLab layout (stride in 1x1 convs, ceil-mode max-pool) or torchvision's."""
        self.caffe_layout = enabled
        self.maxpool.ceil_mode = enabled
        for block in self.modules():
            if isinstance(block, Bottleneck):
                block.set_stride_in_1x1(enabled)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, 3, H, W)`` -> res4 ``(N, 1024, h, w)`` and res5 ``(N, 2048, h, w)``, h ~ H/8."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        res4 = self.layer3(self.layer2(self.layer1(x)))
        return res4, self.layer4(res4)


def build_deeplab_v2(num_classes: int = 19, *, aspp_all_branches: bool = True,
                     multi_level: bool = False) -> Segmenter:
    """DeepLab-v2 ResNet-101 with ASPP rates 6/12/18/24 on res5 (and on res4 if multi-level)."""
    return Segmenter("resnet101", ResNet101Backbone(), num_classes, DEEPLAB_RATES,
                     aspp_all_branches=aspp_all_branches, multi_level=multi_level)
