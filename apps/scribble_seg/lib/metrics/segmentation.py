"""Per-class segmentation metrics on class-index maps: Dice, precision, HD95 in mm.

``dice_per_class`` also takes an ``evaluated`` mask, which makes it the **scribble Dice** used
to validate on held-out scribbles: only the annotated voxels of the held-out scribble map count,

    D_k = 2 |P_k & S_k & A| / (|P_k & A| + |S_k & A|)

(``P_k`` predicted class ``k``, ``S_k`` strokes of class ``k``, ``A`` annotated voxels). A class
absent from both prediction and reference (over the evaluated voxels) gives NaN, not 1 or 0.
"""

from typing import Dict, Optional, Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric, compute_hausdorff_distance
from monai.utils import MetricReduction

from lib.scribbles.convention import ScribbleConvention


def dice_per_class(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, evaluated: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Dice of classes ``1..num_classes-1`` between two class-index maps of the same shape.

    Returns ``(num_classes - 1,)`` float64 with NaN where a class is in neither map.
    """
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if evaluated is not None:
        evaluated = torch.as_tensor(evaluated).bool()
        pred, target = pred[evaluated], target[evaluated]
    out = torch.full((num_classes - 1,), float("nan"), dtype=torch.float64)
    for k in range(1, num_classes):
        p, t = pred == k, target == k
        denom = int(p.sum() + t.sum())
        if denom:
            out[k - 1] = 2.0 * int((p & t).sum()) / denom
    return out


def precision_per_class(pred, target, num_classes: int) -> np.ndarray:
    """``|P_k & T_k| / |P_k|`` for classes ``1..num_classes-1`` (NaN where nothing is predicted)."""
    pred, target = np.asarray(pred), np.asarray(target)
    out = np.full(num_classes - 1, np.nan)
    for k in range(1, num_classes):
        n = (pred == k).sum()
        if n:
            out[k - 1] = ((pred == k) & (target == k)).sum() / n
    return out


def hd95_per_class(pred, target, num_classes: int, spacing: Sequence[float]) -> np.ndarray:
    """95th-percentile Hausdorff distance in mm per class (NaN where either map lacks the class)."""
    pred, target = torch.as_tensor(np.asarray(pred)), torch.as_tensor(np.asarray(target))
    out = np.full(num_classes - 1, np.nan)
    for k in range(1, num_classes):
        p, t = pred == k, target == k
        if p.any() and t.any():
            d = compute_hausdorff_distance(
                p[None, None], t[None, None], percentile=95, spacing=[float(s) for s in spacing]
            )
            out[k - 1] = float(d.item())
    return out


def evaluate(pred, target, convention: ScribbleConvention, spacing: Sequence[float]) -> Dict[str, Dict[str, float]]:
    """Dice, HD95 (mm) and precision per class of a prediction against a dense reference."""
    k = convention.num_classes
    dice = dice_per_class(torch.as_tensor(np.asarray(pred)), torch.as_tensor(np.asarray(target)), k).numpy()
    hd = hd95_per_class(pred, target, k, spacing)
    prec = precision_per_class(pred, target, k)
    return {
        name: {"dice": float(dice[i]), "hd95": float(hd[i]), "precision": float(prec[i])}
        for i, name in enumerate(convention.labels)
    }


class DiceMetric(CumulativeIterationMetric):
    """MONAI metric: mean foreground Dice of logits ``(B, C, ...)`` against a reference ``(B, 1, ...)``.

    With ``scribbles=True`` the reference is a scribble map and only its annotated voxels count
    (scribble Dice); otherwise it is a dense class-index map.
    """

    def __init__(self, convention: ScribbleConvention, scribbles: bool = True):
        super().__init__()
        self.convention, self.scribbles = convention, scribbles

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor):
        pred = y_pred.argmax(dim=1).cpu()
        ref = y[:, 0].long().cpu() if y.ndim == y_pred.ndim else y.long().cpu()
        rows = []
        for b in range(pred.shape[0]):
            if self.scribbles:
                target, annotated = self.convention.targets(ref[b])
                rows.append(dice_per_class(pred[b], target, self.convention.num_classes, annotated))
            else:
                rows.append(dice_per_class(pred[b], ref[b], self.convention.num_classes))
        return torch.stack(rows)

    def aggregate(self, reduction=MetricReduction.MEAN):
        data = self.get_buffer()
        if data is None or not torch.is_tensor(data) or data.numel() == 0:
            return torch.tensor(0.0)
        value = torch.nanmean(data.double())
        return torch.nan_to_num(value, nan=0.0).float()
