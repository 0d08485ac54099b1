"""Can et al.'s seed areas and relabelled maps as pipeline steps (``can_em`` recipe)."""

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from monai.transforms import Transform

from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.seed_areas import seed_areas

from .cache import ContentCache


class SeedAreasd(Transform):
    """Replaces the scribble map ``label`` ``(1, H, W, D)`` by its seed areas (a scribble map:
    strokes grown by the random walk where it is sure, :func:`lib.scribbles.seed_areas.seed_areas`),
    cached on disk by image/scribble content and parameters."""

    def __init__(
        self,
        convention: ScribbleConvention,
        spacing: Sequence[float],
        tau: float,
        beta: float,
        cache_dir: Optional[str] = None,
        image_key: str = "image",
        label_key: str = "label",
    ):
        self.convention, self.spacing = convention, [float(s) for s in spacing]
        self.tau, self.beta = float(tau), float(beta)
        self.cache = ContentCache(cache_dir)
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data):
        d = dict(data)
        image = np.asarray(d[self.image_key], dtype=np.float32)[0]
        scribbles = np.asarray(d[self.label_key], dtype=np.int64)[0]
        key = self.cache.key([image, scribbles], repr((self.spacing, self.tau, self.beta, self.convention.values)))
        cached = self.cache.load(key)
        if cached is None:
            grown = seed_areas(
                image,
                self.convention.seeds(scribbles),
                self.spacing,
                self.convention.num_classes,
                tau=self.tau,
                beta=self.beta,
            )
            cached = {"label": self.convention.from_seeds(grown).astype(np.int16)}
            self.cache.save(key, **cached)
        d[self.label_key] = torch.as_tensor(cached["label"].astype(np.int64))[None]
        return d


class CurrentLabelsd(Transform):
    """Replaces ``label`` by the latest relabelled scribble map of the volume (``labels[id]``,
    ``(H, W, D)``) when there is one: the M step of a recursion trains on the previous E step's maps."""

    def __init__(self, labels: Mapping[str, np.ndarray], id_key: str = "id", label_key: str = "label"):
        self.labels, self.id_key, self.label_key = labels, id_key, label_key

    def __call__(self, data):
        d = dict(data)
        current = self.labels.get(d.get(self.id_key))
        if current is not None:
            if tuple(current.shape) != tuple(d[self.label_key].shape[1:]):
                raise ValueError(
                    f"relabelled map of {d.get(self.id_key)} is {current.shape}, "
                    f"the volume {tuple(d[self.label_key].shape[1:])}"
                )
            d[self.label_key] = torch.as_tensor(np.asarray(current, dtype=np.int64))[None]
        return d
