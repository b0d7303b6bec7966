"""A small dilated ResNet segmenter for CPU runs, with the same interface as DeepLab-v2.

Layout for ``width`` = w (feature_channels = 8w):

==========  ===================================  ========  ========
stage       block                                 stride    dilation
==========  ===================================  ========  ========
stem        3x3 conv 3 -> w                       2         1
stage1      BasicBlock w -> w                     2         1
stage2      BasicBlock w -> 2w                    2         1
stage3      Bottleneck 2w -> 4w (mid w)           1         2
stage4      Bottleneck 4w -> 8w (mid 2w)          1         4
==========  ===================================  ========  ========

Choices, and why:

- Output stride 8 with dilation in the last two stages, like DeepLab-v2, so feature and
  label resolutions (and the matching code) behave the same for both backbones. Every
  stride-2 conv is 3x3 with padding 1, so h = ceil(H / 8).
- The two stride-8 stages are bottlenecks: at w = 32, BasicBlocks there made a
  forward + backward of a (1,3,96,160) + (1,3,96,192) pair take ~46 ms on 2 CPU cores,
  bottlenecks ~21 ms.
- GroupNorm (gcd(C, 8) groups) instead of BatchNorm: a training step sees one image per
  domain, where batch statistics are noise, and this network has no pretrained
  statistics to freeze. Each block's last norm starts with zero gain so every block
  starts as (a projection of) the identity, which keeps training from scratch stable.
- ASPP rates (1, 2, 3, 4): DeepLab's 6/12/18/24 were chosen for ~65 x 129 feature maps;
  scaled to the ~12 x 20 maps of 96 x 160 inputs (factor ~0.18) they become ~1/2/3/4.
  Rates of 12 and more would sample mostly padding there.
- ``mid`` (feeding the multi-level head) is stage3, the analogue of res4.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from simtune.errors import ConfigError
from simtune.models.deeplab import Backbone, Segmenter

SMALL_RATES = (1, 2, 3, 4)  # ASPP rates scaled to ~12 x 20 feature maps (see module docstring)
MAX_GROUPS = 8  # GroupNorm groups, fewer when the channel count is not a multiple of 8


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with gcd(channels, 8) groups, so any channel count is valid."""
    return nn.GroupNorm(math.gcd(channels, MAX_GROUPS), channels)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """1x1 conv + norm for the residual path when width or stride change, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         group_norm(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convs with GroupNorm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride)
        nn.init.zeros_(self.norm2.weight)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, ceil(H / stride), ceil(W / stride))``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(out)) + identity)


class DilatedBottleneck(nn.Module):
    """1x1 reduce, dilated 3x3, 1x1 expand (x4), GroupNorm, stride 1."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        mid = max(1, out_channels // 4)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.norm1 = group_norm(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = group_norm(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.norm3 = group_norm(out_channels)
        self.downsample = _projection(in_channels, out_channels, 1)
        nn.init.zeros_(self.norm3.weight)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, h, w)`` -> ``(N, C_out, h, w)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        return F.relu(self.norm3(self.conv3(out)) + identity)


class SmallBackbone(Backbone):
    """Small dilated ResNet at output stride 8 (see the module docstring for the layout)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"width must be >= 1, but got width={width}")
        w = width
        self.mid_channels = 4 * w
        self.out_channels = 8 * w
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False),
                                  group_norm(w), nn.ReLU(inplace=True))
        self.stage1 = BasicBlock(w, w, stride=2)
        self.stage2 = BasicBlock(w, 2 * w, stride=2)
        self.stage3 = DilatedBottleneck(2 * w, 4 * w, dilation=2)
        self.stage4 = DilatedBottleneck(4 * w, 8 * w, dilation=4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, 3, H, W)`` -> stage3 ``(N, 4w, h, w)`` and stage4 ``(N, 8w, h, w)``, h = ceil(H/8)."""
        mid = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return mid, self.stage4(mid)


def build_small_segmenter(num_classes: int = 19, *, width: int = 32, aspp_all_branches: bool = True,
                          multi_level: bool = False) -> Segmenter:
    """The small CPU segmenter: ``SmallBackbone(width)`` + ASPP with rates 1/2/3/4."""
    return Segmenter("small", SmallBackbone(width), num_classes, SMALL_RATES,
                     aspp_all_branches=aspp_all_branches, multi_level=multi_level)
