"""Boundary cross-entropy of Scribble2D5's static boundary prediction module: the boundary head's
logits ``b`` against the pseudo boundary ``B`` in [0, 1], class-balanced as in HED (Xie & Tu, 2015)
because edges are a few percent of the voxels::

    L_bry = -mean_i [ w+ B_i log sigmoid(b_i) + w- (1 - B_i) log(1 - sigmoid(b_i)) ],
    w+ = |B = 0| / N,  w- = |B > 0| / N      (per sample)
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class BoundaryLoss(nn.Module):
    """Class-balanced binary cross-entropy on boundary logits ``(B, 1, ...)`` vs targets in [0, 1]."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"boundary logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
        target = target.float()
        dims = tuple(range(1, target.ndim))
        positive = target.mean(dim=dims, keepdim=True)
        weight = target * (1 - positive) + (1 - target) * positive
        loss = F.binary_cross_entropy_with_logits(logits.float(), target, weight=weight, reduction="sum")
        return loss / weight.sum().clamp_min(1e-6)
