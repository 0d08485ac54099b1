"""Partial cross-entropy: cross-entropy over the annotated voxels of a scribble map only.

    pCE(x, s) = - (1 / |A|) * sum_{i in A} log softmax(x)_i[y_i],    A = {i : s_i != unannotated}

with ``y_i`` the class index of the stroke at ``i`` (background strokes -> class 0). By default
the mean is over annotated voxels (PyTorch ``ignore_index`` semantics; WSL4MIS / ZScribbleSeg), so
the loss does not shrink with scribble density. ``mean="all"`` divides by every voxel ``N``
instead, as CycleMix's code does (``1 / N`` for ``1 / |A|``: ~1.5 % of the value on MSCMR's
scribbles), which keeps its 0.1-weighted consistency terms as strong relative to the supervision
as in the paper. A batch without any annotation gives exactly 0 (with a zero gradient), never NaN.
The unannotated value comes from the convention: nothing here knows it is 0.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.scribbles.convention import ScribbleConvention

from .utils import check_logits_and_scribbles


class PartialCrossEntropyLoss(nn.Module):
    """Cross-entropy on annotated voxels only.

    Args:
        convention: the scribble convention of the targets.
        weight: optional per-class weights ``(C,)``, as in :class:`torch.nn.CrossEntropyLoss`
            (the mean is then the weighted mean over annotated voxels).
        mean: ``annotated`` (over the annotated voxels) or ``all`` (over every voxel, CycleMix).
    """

    def __init__(self, convention: ScribbleConvention, weight: Optional[torch.Tensor] = None, mean: str = "annotated"):
        super().__init__()
        if mean not in ("annotated", "all"):
            raise ValueError(f"mean must be 'annotated' or 'all', got {mean!r}")
        self.convention, self.mean = convention, mean
        if weight is not None and len(weight) != convention.num_classes:
            raise ValueError(f"weight needs {convention.num_classes} entries, got {len(weight)}")
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, scribbles: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(B, C, *spatial)`` unnormalised scores, ``C = convention.num_classes``.
            scribbles: ``(B, 1, *spatial)`` or ``(B, *spatial)`` scribble map.

        Returns:
            scalar loss.
        """
        scribbles = check_logits_and_scribbles(logits, scribbles, self.convention)
        target, annotated = self.convention.targets(scribbles)
        ce = F.cross_entropy(logits.float(), target, weight=self.weight, reduction="none")
        w = annotated.to(ce.dtype)
        if self.weight is not None:
            w = w * self.weight[target]
        if self.mean == "all":
            return (ce * w).sum() / ce.numel()
        return (ce * w).sum() / w.sum().clamp_min(1.0)
