"""Weak-Net's per-volume boundary weights as a pipeline step."""

from typing import Sequence

import numpy as np
import torch
from monai.transforms import Transform

from lib.losses.reconstruction import boundary_weights
from lib.scribbles.convention import ScribbleConvention


class TemplateWeightsd(Transform):
    """Adds ``weight`` ``(1, H, W, D)``: :func:`lib.losses.reconstruction.boundary_weights` of the
    dense template in ``label`` (a fully annotated scribble map) at ``spacing``."""

    def __init__(
        self,
        convention: ScribbleConvention,
        spacing: Sequence[float],
        distance_mm: float,
        low: float,
        label_key: str = "label",
        weight_key: str = "weight",
    ):
        self.convention, self.spacing = convention, [float(s) for s in spacing]
        self.distance_mm, self.low = float(distance_mm), float(low)
        self.label_key, self.weight_key = label_key, weight_key

    def __call__(self, data):
        d = dict(data)
        classes, _ = self.convention.targets(np.asarray(d[self.label_key])[0])
        d[self.weight_key] = torch.as_tensor(boundary_weights(classes, self.spacing, self.distance_mm, self.low))[None]
        return d
