"""Dice loss restricted to the annotated voxels of a scribble map (WSL4MIS ``pDLoss``).

For each class ``k`` (background included), with ``p = softmax(x)``, one-hot targets ``y`` and the
annotated mask ``m``, summed over the batch and all voxels::

    D_k = (2 * sum m * p_k * y_k + eps_nr) / (sum m * p_k + sum m * y_k + eps_dr)
    L   = 1 - mean_k D_k

A class without strokes still gets a term: it pushes its probability down on the voxels
annotated as other classes. Without any annotation every ``D_k`` is ``eps_nr / eps_dr = 1`` and
the loss is 0.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.scribbles.convention import ScribbleConvention

from .utils import check_logits_and_scribbles


class MaskedDiceLoss(nn.Module):
    """Soft Dice on annotated voxels only.

    Args:
        convention: the scribble convention of the targets.
        include_background: include the background class in the mean.
        smooth_nr: ``eps_nr``; smooth_dr: ``eps_dr``.
    """

    def __init__(
        self,
        convention: ScribbleConvention,
        include_background: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
    ):
        super().__init__()
        self.convention = convention
        self.include_background = include_background
        self.smooth_nr, self.smooth_dr = smooth_nr, smooth_dr

    def forward(self, logits: torch.Tensor, scribbles: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, C, *spatial), ``scribbles`` (B, 1, *spatial) or (B, *spatial) -> scalar."""
        scribbles = check_logits_and_scribbles(logits, scribbles, self.convention)
        target, annotated = self.convention.targets(scribbles)
        p = torch.softmax(logits.float(), dim=1)
        y = F.one_hot(target, num_classes=p.shape[1]).movedim(-1, 1).to(p.dtype)
        m = annotated.unsqueeze(1).to(p.dtype)
        dims = [0] + list(range(2, p.ndim))
        inter = (m * p * y).sum(dims)
        denom = (m * p).sum(dims) + (m * y).sum(dims)
        dice = (2 * inter + self.smooth_nr) / (denom + self.smooth_dr)
        if not self.include_background:
            dice = dice[1:]
        return 1.0 - dice.mean()
