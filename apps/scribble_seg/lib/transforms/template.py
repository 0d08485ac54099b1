"""Weak-Net's per-volume boundary weights as a dictionary transform."""

from typing import Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.template import boundary_weights


class TemplateWeightsd(MapTransform):
    """For each dense template of ``keys`` (a fully annotated scribble map ``(1, H, W, D)``), adds
    its :func:`lib.scribbles.template.boundary_weights` at ``spacing`` under ``weight_keys``
    ``(1, H, W, D)``."""

    def __init__(
        self,
        keys: KeysCollection,
        convention: ScribbleConvention,
        spacing: Sequence[float],
        distance_mm: float,
        low: float,
        weight_keys: KeysCollection = "weight",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.convention, self.spacing = convention, [float(s) for s in spacing]
        self.distance_mm, self.low = float(distance_mm), float(low)
        self.weight_keys = ensure_tuple_rep(weight_keys, len(self.keys))

    def __call__(self, data):
        d = dict(data)
        for key, weight_key in self.key_iterator(d, self.weight_keys):
            classes, _ = self.convention.targets(np.asarray(d[key])[0])
            weights = boundary_weights(classes, self.spacing, self.distance_mm, self.low)
            d[weight_key] = torch.as_tensor(weights)[None]
        return d
