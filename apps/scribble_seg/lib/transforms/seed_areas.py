"""Can et al.'s seed areas and relabelled maps as dictionary transforms (``can_em`` recipe)."""

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.seed_areas import seed_areas

from .cache import ContentCache


class SeedAreasd(MapTransform):
    """Replaces each scribble map of ``keys`` ``(1, H, W, D)`` by its seed areas (a scribble map:
    strokes grown by the random walk on ``data[image_key]`` where it is sure -- in 3D, or per
    stroked slice with ``per_slice`` -- :func:`lib.scribbles.seed_areas.seed_areas`), cached on disk
    by image/scribble content and parameters."""

    def __init__(
        self,
        keys: KeysCollection,
        convention: ScribbleConvention,
        spacing: Sequence[float],
        tau: float,
        beta: float,
        cache_dir: Optional[str] = None,
        image_key: str = "image",
        per_slice: bool = False,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.convention, self.spacing = convention, [float(s) for s in spacing]
        self.tau, self.beta, self.per_slice = float(tau), float(beta), bool(per_slice)
        self.cache = ContentCache(cache_dir)
        self.image_key = image_key

    def __call__(self, data):
        d = dict(data)
        image = np.asarray(d[self.image_key], dtype=np.float32)[0]
        for key in self.key_iterator(d):
            scribbles = np.asarray(d[key], dtype=np.int64)[0]
            params = repr((self.spacing, self.tau, self.beta, self.convention.values, self.per_slice))
            cache_key = self.cache.key([image, scribbles], params)
            cached = self.cache.load(cache_key)
            if cached is None:
                grown = seed_areas(
                    image,
                    self.convention.seeds(scribbles),
                    self.spacing,
                    self.convention.num_classes,
                    tau=self.tau,
                    beta=self.beta,
                    per_slice=self.per_slice,
                )
                cached = {"label": self.convention.from_seeds(grown).astype(np.int16)}
                self.cache.save(cache_key, **cached)
            d[key] = torch.as_tensor(cached["label"].astype(np.int64))[None]
        return d


class CurrentLabelsd(MapTransform):
    """Replaces each map of ``keys`` by the latest relabelled scribble map of the volume
    (``labels[data[id_key]]``, ``(H, W, D)``) when there is one: the M step of a recursion trains
    on the previous E step's maps."""

    def __init__(
        self,
        keys: KeysCollection,
        labels: Mapping[str, np.ndarray],
        id_key: str = "id",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.labels, self.id_key = labels, id_key

    def __call__(self, data):
        d = dict(data)
        current = self.labels.get(d.get(self.id_key))
        if current is None:
            return d
        for key in self.key_iterator(d):
            if tuple(current.shape) != tuple(d[key].shape[1:]):
                raise ValueError(
                    f"relabelled map of {d.get(self.id_key)} is {current.shape}, the volume {tuple(d[key].shape[1:])}"
                )
            d[key] = torch.as_tensor(np.asarray(current, dtype=np.int64))[None]
        return d
