"""The 2D UNets of CycleMix / ZScribbleSeg (Zhang & Zhuang, CVPR 2022; MedIA 2026) and of ExMod
(Alshewaier et al.), applied slice by slice to volumes.

Both descend from Baumgartner's ACDC ``unet2D_bn_modified``: per level ``n`` convolutions of 3x3,
each **Conv -> ReLU -> BatchNorm** (batch norm after the activation, as in the released code),
2x2 max-pooling down, bilinear x2 up-sampling followed by a 3x3 convolution, skip concatenation,
and a 1x1 class head. Differences from the released port, on purpose: padded convolutions (any
input size; no 212x212 crop-and-concat arithmetic), full-width up-path (the port's Up4/Up3 emit
only ``nlabels`` channels, a Baumgartner quirk) and **logits** out (the port ends in BN + softmax;
our losses apply the softmax).

* :class:`UNet2DBN` -- ZScribbleSeg / CycleMix: 2 convolutions per level.
* :class:`ExModUNet` -- ExMod's expanded UNet: the convolutions of every level doubled (4).

Input ``(B, C, H, W)`` or a volume ``(B, C, H, W, D)``, which is run as ``B * D`` slices and
returned as ``(B, out_channels, H, W, D)``. Sizes are padded to a multiple of
``2 ** (len(features) - 1)`` and cropped back.

Parameters (in=1, out=4): UNet2DBN 34,526,084 with features (64, 128, 256, 512, 1024),
2,161,892 with (16, 32, 64, 128, 256); ExModUNet 65,951,876 / 4,129,316.
"""

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv_relu_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(cout))


def _block(cin: int, cout: int, n: int, dropout: float) -> nn.Sequential:
    layers = [_conv_relu_bn(cin if i == 0 else cout, cout) for i in range(n)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class UNet2DBN(nn.Module):
    """CycleMix / ZScribbleSeg UNet (see the module docstring).

    Args:
        in_channels: image channels.
        out_channels: classes (background included).
        features: channels per level, top to bottom.
        convs_per_level: Conv-ReLU-BN layers per level (2 here, 4 in ExMod).
        dropout: 2D dropout after each level's block (0 = none; > 0 enables MC dropout).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        convs_per_level: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        if convs_per_level < 1:
            raise ValueError(f"convs_per_level must be >= 1, got {convs_per_level}")
        self.divisor = 2 ** (len(features) - 1)
        self.down = nn.ModuleList(
            [
                _block(in_channels if i == 0 else features[i - 1], f, convs_per_level, dropout)
                for i, f in enumerate(features)
            ]
        )
        self.up_conv = nn.ModuleList()
        self.up_block = nn.ModuleList()
        for i in reversed(range(len(features) - 1)):
            self.up_conv.append(_conv_relu_bn(features[i + 1], features[i]))
            self.up_block.append(_block(2 * features[i], features[i], convs_per_level, dropout))
        self.head = nn.Conv2d(features[0], out_channels, 1)

    def _forward2d(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.divisor, (-w) % self.divisor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, block, skip in zip(self.up_conv, self.up_block, reversed(skips[:-1])):
            x = up(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C, H, W) or (B, C, H, W, D) -> logits of the same layout."""
        if x.ndim == 4:
            return self._forward2d(x)
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, H, W) or (B, C, H, W, D), got shape {tuple(x.shape)}")
        b, c, h, w, d = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)
        out = self._forward2d(slices)
        return out.reshape(b, d, -1, h, w).permute(0, 2, 3, 4, 1)


class ExModUNet(UNet2DBN):
    """ExMod's expanded UNet: :class:`UNet2DBN` with 4 Conv-ReLU-BN layers per level."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        convs_per_level: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__(in_channels, out_channels, features, convs_per_level, dropout)
