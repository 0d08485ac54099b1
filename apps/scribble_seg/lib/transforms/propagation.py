"""Scribble2D5's label propagation as a dictionary transform, cached on disk by content."""

from dataclasses import asdict
from typing import Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.propagation import PropagationParams, propagate

from .cache import ContentCache


class PropagateScribblesd(MapTransform):
    """For each scribble map of ``keys`` ``(1, H, W, D)``, adds its supervoxel pseudo scribble map
    under ``pseudo_keys`` and its static pseudo boundary under ``boundary_keys`` (both
    ``(1, H, W, D)``), computed by :func:`lib.scribbles.propagation.propagate` from
    ``data[image_key]`` at ``spacing``.

    Results are cached in ``cache_dir`` under a hash of the image and scribble contents, the
    spacing, the parameters and the convention: a volume is propagated once, not per epoch, and a
    retraining after new scribbles on other volumes reuses it. ``hits`` / ``misses`` count lookups.
    """

    def __init__(
        self,
        keys: KeysCollection,
        convention: ScribbleConvention,
        spacing: Sequence[float],
        params: PropagationParams,
        cache_dir: Optional[str] = None,
        image_key: str = "image",
        pseudo_keys: KeysCollection = "pseudo",
        boundary_keys: KeysCollection = "boundary",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.convention, self.spacing, self.params = convention, [float(s) for s in spacing], params
        self.cache = ContentCache(cache_dir)
        self.image_key = image_key
        self.pseudo_keys = ensure_tuple_rep(pseudo_keys, len(self.keys))
        self.boundary_keys = ensure_tuple_rep(boundary_keys, len(self.keys))

    @property
    def hits(self) -> int:
        return self.cache.hits

    @property
    def misses(self) -> int:
        return self.cache.misses

    def __call__(self, data):
        d = dict(data)
        image = np.asarray(d[self.image_key], dtype=np.float32)[0]
        for key, pseudo_key, boundary_key in self.key_iterator(d, self.pseudo_keys, self.boundary_keys):
            label = np.asarray(d[key], dtype=np.int64)[0]
            params = repr((self.spacing, sorted(asdict(self.params).items()), self.convention.values))
            cache_key = self.cache.key([image, label], params)
            cached = self.cache.load(cache_key)
            if cached is None:
                pseudo, boundary = propagate(image, label, self.spacing, self.convention, self.params)
                cached = {"pseudo": pseudo.astype(np.int16), "boundary": boundary.astype(np.float16)}
                self.cache.save(cache_key, **cached)
            d[pseudo_key] = torch.as_tensor(np.asarray(cached["pseudo"], dtype=np.int64))[None]
            d[boundary_key] = torch.as_tensor(np.asarray(cached["boundary"], dtype=np.float32))[None]
        return d
