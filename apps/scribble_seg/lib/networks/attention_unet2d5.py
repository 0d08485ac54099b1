"""The 2.5D attention UNet of Scribble2D5 (Chen et al., MICCAI 2022), on the VS_Seg UNet2D5 backbone
(Wang et al., "Automatic segmentation of vestibular schwannoma ...", 2019).

Anisotropic volumes (thick slices) are handled by **in-plane-only** convolutions on the first
two levels -- kernels (3, 3, 1), strides (2, 2, 1) -- and full 3D ones below, where the voxels
have become roughly isotropic::

    level  channels  kernel     stride to next   resolution of a 96 x 96 x 16 patch
    0      16        (3,3,1)    (2,2,1)          96 x 96 x 16
    1      32        (3,3,1)    (2,2,1)          48 x 48 x 16
    2      48        (3,3,3)    (2,2,2)          24 x 24 x 16
    3      64        (3,3,3)    (2,2,2)          12 x 12 x 8
    4      80        (3,3,3)    (2,2,2)           6 x  6 x 4
    5      96        (3,3,3)    bottleneck        3 x  3 x 2  (+ ASPP)

Blocks: residual units (2 sub-units of conv -> batch norm -> dropout -> PReLU) with strided
convolutions for down-sampling and transposed convolutions for up-sampling. Switchable parts:

* **attention gates**, one per decoder level, on the concatenated skip + up-sampled features
  ``x`` (2C channels): ``a = sigmoid(conv(ReLU(conv(x))))`` with one output channel and
  ``out = x + a * x``; the maps ``a`` are returned (for attention deep supervision).
* **ASPP** at the bottleneck (Chen et al., DeepLab): a 1x1x1 branch, one 3x3x3 branch per
  dilation rate (Scribble2D5's code: 6, 12, 18) and a global-average-pool branch, concatenated
  and projected back to the bottleneck width.
* **deep supervision**: 1x1x1 class heads on the decoder levels 1..n (coarse logits).
* **boundary head**: decoder features of levels 0, 1, 2 are projected to 16 channels each,
  up-sampled to full resolution, fused by a 1x1x1 then a (3, 3, 1) convolution into 16 boundary
  features and mapped to 1-channel edge logits.
* **refinement head**: the final segmentation is ``initial + R([proj(initial), boundary features])``
  where ``R`` is a one-sub-unit residual unit followed by a 1x1x1 convolution. (Scribble2D5's
  heads use RCAB blocks and 3x3x3 convolutions at full resolution; these lighter ones keep CPU
  inference affordable.)

``forward`` returns a dict::

    {"final": (B, C, H, W, D) logits,          # refined (or = "initial" without refinement)
     "initial": (B, C, H, W, D) logits,
     "boundary": (B, 1, H, W, D) edge logits,   # only with the boundary head
     "attention": [(B, 1, h_l, w_l, d_l), ...], # decoder levels, coarse to fine (with attention)
     "deep_supervision": [(B, C, h_l, w_l, d_l), ...]}  # coarse to fine (with deep supervision)

Any input size works (inputs are padded to a multiple of the strides' product, (32, 32, 8) by
default, and outputs cropped back; train on patches that are multiples of it so that the coarse
attention / deep-supervision maps align with a pooled target). Weights and activations are kept
channels-last (``torch.channels_last_3d``): 1.8x faster CPU inference than the default layout.

Parameters (in=1, out=4, defaults): 4,010,922 with every part; 3,740,106 without ASPP;
3,009,935 for the backbone alone (no ASPP, attention, boundary, refinement).
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit

Shape3 = Tuple[int, int, int]


class AttentionGate(nn.Module):
    """Scribble2D5 / VS_Seg attention: ``a = sigmoid(conv_k(ReLU(conv_k(x))))``, ``out = x + a * x``.

    Args:
        channels: channels ``C`` of ``x`` (B, C, H, W, D); the hidden layer has ``C // 2``.
        kernel_size: kernel of both convolutions ((3, 3, 1) on in-plane levels).
    """

    def __init__(self, channels: int, kernel_size: Shape3):
        super().__init__()
        pad = tuple(k // 2 for k in kernel_size)
        self.hidden = nn.Conv3d(channels, max(1, channels // 2), kernel_size, padding=pad)
        self.out = nn.Conv3d(max(1, channels // 2), 1, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        a = torch.sigmoid(self.out(F.relu(self.hidden(x))))
        return x + a * x, a


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (3D): 1x1x1, dilated 3x3x3 per rate, global pooling; projected.

    Args:
        channels: input and output channels.
        rates: dilation rates of the 3x3x3 branches.
        branch_channels: channels of each branch.
    """

    def __init__(self, channels: int, rates: Sequence[int] = (6, 12, 18), branch_channels: int = 32):
        super().__init__()

        def branch(k: int, d: int) -> nn.Module:
            return nn.Sequential(
                nn.Conv3d(channels, branch_channels, k, padding=d * (k // 2), dilation=d, bias=False),
                nn.BatchNorm3d(branch_channels),
                nn.ReLU(inplace=True),
            )

        self.branches = nn.ModuleList([branch(1, 1)] + [branch(3, r) for r in rates])
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool3d(1), nn.Conv3d(channels, branch_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            nn.Conv3d(branch_channels * (len(rates) + 2), channels, 1, bias=False),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches]
        feats.append(self.pool(x).expand(-1, -1, *x.shape[2:]))
        return self.project(torch.cat(feats, dim=1))


def _dropout(rate: float) -> nn.Module:
    return nn.Dropout(rate) if rate > 0 else nn.Identity()


class AttentionUNet2D5(nn.Module):
    """2.5D attention UNet with ASPP, boundary and refinement heads (see the module docstring).

    Args:
        in_channels: image channels.
        out_channels: classes (background included).
        channels: channels per level, top to bottom.
        strides: down-sampling stride from each level to the next (``len(channels) - 1`` of them).
        inplane_levels: how many top levels use (3, 3, 1) kernels.
        num_res_units: sub-units per residual unit.
        dropout: dropout probability in every residual unit (MC dropout needs it > 0), or one
            probability per level (``len(channels)``): the encoder unit of level ``i``, and the
            up-sampling and decoder unit that output level ``i``, use ``dropout[i]``. Can et al.'s
            ``(0, 0, 0, 0.5, 0.5, 0.5)`` puts dropout 0.5 in the 5 innermost blocks only (the
            encoder's 3 deepest levels, the decoder's 2 deepest).
        dropout_placement: ``units``: a dropout in every sub-unit of the residual units and in the
            up-sampling convolutions (MONAI's blocks); ``blocks``: one dropout on the output of each
            encoder and decoder block instead, as Can et al.'s ``tf.nn.dropout`` after pool3, pool4,
            conv5_2, conv6_2, conv7_2 (with their rates, one layer in each of the 5 innermost blocks).
        attention: attention gates on the decoder levels.
        deep_supervision: return coarse logits of the decoder levels.
        aspp_rates: dilation rates of the bottleneck ASPP; ``None`` or ``()`` disables it.
        boundary: boundary (edge) head.
        refinement: refinement head (needs ``boundary``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        channels: Sequence[int] = (16, 32, 48, 64, 80, 96),
        strides: Sequence[Shape3] = ((2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        inplane_levels: int = 2,
        num_res_units: int = 2,
        dropout: Union[float, Sequence[float]] = 0.1,
        dropout_placement: str = "units",
        attention: bool = True,
        deep_supervision: bool = False,
        aspp_rates: Optional[Sequence[int]] = (6, 12, 18),
        boundary: bool = True,
        refinement: bool = True,
    ):
        super().__init__()
        if len(strides) != len(channels) - 1:
            raise ValueError(f"need len(channels) - 1 = {len(channels) - 1} strides, got {len(strides)}")
        if refinement and not boundary:
            raise ValueError("the refinement head fuses boundary features: it needs boundary=True")
        rates = [float(dropout)] * len(channels) if np.isscalar(dropout) else [float(r) for r in dropout]
        if len(rates) != len(channels) or not all(0.0 <= r < 1.0 for r in rates):
            raise ValueError(
                f"dropout must be in [0, 1), or {len(channels)} such values (one per level), got {dropout}"
            )
        if dropout_placement not in ("units", "blocks"):
            raise ValueError(f"dropout_placement must be 'units' or 'blocks', got {dropout_placement!r}")
        block_rates = rates if dropout_placement == "blocks" else [0.0] * len(rates)
        if dropout_placement == "blocks":
            rates = [0.0] * len(rates)
        self.out_channels = out_channels
        self.strides = [tuple(s) for s in strides]
        self.divisor = tuple(int(np.prod([s[i] for s in self.strides])) for i in range(3))
        self.attention, self.deep_supervision = attention, deep_supervision
        kernels = [(3, 3, 1) if i < inplane_levels else (3, 3, 3) for i in range(len(channels))]
        common = dict(spatial_dims=3, act="PRELU", norm="BATCH")

        self.encoders = nn.ModuleList()
        for i, c in enumerate(channels):
            cin = in_channels if i == 0 else channels[i - 1]
            stride = 1 if i == 0 else self.strides[i - 1]
            kernel = kernels[i] if i == 0 else kernels[i - 1]
            self.encoders.append(
                ResidualUnit(
                    in_channels=cin,
                    out_channels=c,
                    strides=stride,
                    kernel_size=kernel,
                    subunits=num_res_units,
                    dropout=rates[i],
                    **common,
                )
            )
        self.aspp = ASPP(channels[-1], aspp_rates) if aspp_rates else None
        # one dropout on each block's output (``dropout_placement="blocks"``), identity otherwise
        self.encoder_dropout = nn.ModuleList([_dropout(block_rates[i]) for i in range(len(channels))])
        self.decoder_dropout = nn.ModuleList([_dropout(block_rates[i]) for i in reversed(range(len(channels) - 1))])

        self.ups, self.gates, self.decoders, self.ds_heads = (nn.ModuleList() for _ in range(4))
        for i in reversed(range(len(channels) - 1)):
            self.ups.append(
                Convolution(
                    in_channels=channels[i + 1],
                    out_channels=channels[i],
                    strides=self.strides[i],
                    kernel_size=kernels[i],
                    is_transposed=True,
                    dropout=rates[i],
                    **common,
                )
            )
            if attention:
                self.gates.append(AttentionGate(2 * channels[i], kernels[i]))
            self.decoders.append(
                ResidualUnit(
                    in_channels=2 * channels[i],
                    out_channels=channels[i],
                    strides=1,
                    kernel_size=kernels[i],
                    subunits=num_res_units,
                    dropout=rates[i],
                    **common,
                )
            )
            if deep_supervision and i > 0:
                self.ds_heads.append(nn.Conv3d(channels[i], out_channels, 1))
        self.head = nn.Conv3d(channels[0], out_channels, 1)

        self.boundary_levels = [lvl for lvl in (0, 1, 2) if lvl < len(channels) - 1] if boundary else []
        if boundary:
            self.boundary_proj = nn.ModuleList([nn.Conv3d(channels[lvl], 16, 1) for lvl in self.boundary_levels])
            self.boundary_fuse = nn.Sequential(
                nn.Conv3d(16 * len(self.boundary_levels), 16, 1),
                Convolution(
                    in_channels=16, out_channels=16, kernel_size=(3, 3, 1), spatial_dims=3, act="RELU", norm="BATCH"
                ),
            )
            self.boundary_head = nn.Conv3d(16, 1, 1)
        if refinement:
            self.refine_proj = nn.Conv3d(out_channels, 16, 1)
            self.refine = nn.Sequential(
                ResidualUnit(
                    in_channels=32,
                    out_channels=16,
                    strides=1,
                    kernel_size=(3, 3, 1),
                    subunits=1,
                    dropout=rates[0],
                    **common,
                ),
                nn.Conv3d(16, out_channels, 1),
            )
        self.boundary, self.refinement = boundary, refinement
        # channels-last 3D: ~1.8x faster CPU inference (oneDNN), also fine for cuDNN
        self.to(memory_format=torch.channels_last_3d)

    def _pad(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, ...]]:
        size = x.shape[2:]
        extra = [(-n) % d for n, d in zip(size, self.divisor)]
        if any(extra):
            x = F.pad(x, [p for e in reversed(extra) for p in (0, e)], mode="replicate")
        return x, tuple(size)

    def forward(self, x: torch.Tensor) -> Dict[str, Union[torch.Tensor, List[torch.Tensor]]]:
        """``x``: (B, in_channels, H, W, D) -> dict of outputs (see the module docstring)."""
        if x.ndim != 5:
            raise ValueError(f"expected a (B, C, H, W, D) input, got shape {tuple(x.shape)}")
        x, size = self._pad(x)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        crop = (slice(None), slice(None)) + tuple(slice(0, n) for n in size)

        skips = []
        for enc, drop in zip(self.encoders, self.encoder_dropout):
            x = drop(enc(x))
            skips.append(x)
        if self.aspp is not None:
            x = x + self.aspp(x)
        attention, deep, decoded = [], [], {}
        levels = list(reversed(range(len(self.encoders) - 1)))
        ds_iter = iter(self.ds_heads)
        for j, lvl in enumerate(levels):
            x = torch.cat([skips[lvl], self.ups[j](x)], dim=1)
            if self.attention:
                x, a = self.gates[j](x)
                attention.append(a)
            x = self.decoder_dropout[j](self.decoders[j](x))
            decoded[lvl] = x
            if self.deep_supervision and lvl > 0:
                deep.append(next(ds_iter)(x))
        initial = self.head(x)

        out: Dict[str, Union[torch.Tensor, List[torch.Tensor]]] = {"initial": initial[crop], "final": initial[crop]}
        if self.boundary:
            full = initial.shape[2:]
            feats = [
                F.interpolate(p(decoded[lvl]), size=full, mode="trilinear", align_corners=False)
                if lvl
                else p(decoded[lvl])
                for p, lvl in zip(self.boundary_proj, self.boundary_levels)
            ]
            bfeat = self.boundary_fuse(torch.cat(feats, dim=1))
            out["boundary"] = self.boundary_head(bfeat)[crop]
            if self.refinement:
                final = initial + self.refine(torch.cat([F.relu(self.refine_proj(initial)), bfeat], dim=1))
                out["final"] = final[crop]
        if self.attention:
            out["attention"] = attention
        if self.deep_supervision:
            out["deep_supervision"] = deep
        return out
