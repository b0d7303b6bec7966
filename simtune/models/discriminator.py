"""Output-space discriminator D of AdaptSegNet, as used by SIM.

Five 4x4 convolutions with stride 2 and padding 1; channels w, 2w, 4w, 8w, 1 (w = 64 in the
paper); LeakyReLU(0.2) between them; no normalisation and no sigmoid, because the losses
use BCE-with-logits (or least squares) on the raw output.
"""

from __future__ import annotations

from torch import Tensor, nn

from simtune.errors import ConfigError

KERNEL, STRIDE, PADDING = 4, 2, 1
NEGATIVE_SLOPE = 0.2  # LeakyReLU slope of AdaptSegNet's D
WIDTH_MULTIPLIERS = (1, 2, 4, 8)  # hidden channels relative to `width`: 64/128/256/512 at width 64


class Discriminator(nn.Module):
    """Fully convolutional D on softmax maps; each conv halves the resolution."""

    def __init__(self, num_classes: int = 19, *, width: int = 64) -> None:
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ConfigError(f"num_classes >= 1 and width >= 1 must hold, but got "
                              f"num_classes={num_classes}, width={width}")
        channels = [num_classes] + [width * m for m in WIDTH_MULTIPLIERS] + [1]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            if i > 0:
                layers.append(nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))
            layers.append(nn.Conv2d(c_in, c_out, KERNEL, stride=STRIDE, padding=PADDING))
        self.layers = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        """Score softmax maps as source (0) or target (1).

        Args:
            x: ``(N, K, H, W)`` class probabilities (softmax of upsampled logits).
        Returns:
            ``(N, 1, H/32, W/32)`` logits (floor at each halving for odd sizes).
        """
        return self.layers(x)


def build_discriminator(num_classes: int = 19, *, width: int = 64) -> Discriminator:
    """The paper's D (``width`` 64: channels 64/128/256/512/1) or a narrower one."""
    return Discriminator(num_classes, width=width)
