"""Scribble2D5's label propagation as a pipeline step, cached on disk by content."""

from dataclasses import asdict
from typing import Optional, Sequence

import numpy as np
import torch
from monai.transforms import Transform

from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.propagation import PropagationParams, propagate

from .cache import ContentCache


class PropagateScribblesd(Transform):
    """Adds ``pseudo`` (supervoxel pseudo scribble map) and ``boundary`` (static pseudo boundary),
    both ``(1, H, W, D)``, computed from ``image`` and the scribble map ``label`` at ``spacing``.

    Results are cached in ``cache_dir`` under a hash of the image and scribble contents, the
    spacing, the parameters and the convention: a volume is propagated once, not per epoch, and a
    retraining after new scribbles on other volumes reuses it. ``hits`` / ``misses`` count lookups.
    """

    def __init__(
        self,
        convention: ScribbleConvention,
        spacing: Sequence[float],
        params: PropagationParams,
        cache_dir: Optional[str] = None,
        image_key: str = "image",
        label_key: str = "label",
        pseudo_key: str = "pseudo",
        boundary_key: str = "boundary",
    ):
        self.convention, self.spacing, self.params = convention, [float(s) for s in spacing], params
        self.cache = ContentCache(cache_dir)
        self.image_key, self.label_key, self.pseudo_key, self.boundary_key = (
            image_key,
            label_key,
            pseudo_key,
            boundary_key,
        )

    @property
    def hits(self) -> int:
        return self.cache.hits

    @property
    def misses(self) -> int:
        return self.cache.misses

    def __call__(self, data):
        d = dict(data)
        image = np.asarray(d[self.image_key], dtype=np.float32)[0]
        label = np.asarray(d[self.label_key], dtype=np.int64)[0]
        key = self.cache.key(
            [image, label], repr((self.spacing, sorted(asdict(self.params).items()), self.convention.values))
        )
        cached = self.cache.load(key)
        if cached is not None:
            return self._put(d, cached["pseudo"], cached["boundary"])
        pseudo, boundary = propagate(image, label, self.spacing, self.convention, self.params)
        self.cache.save(key, pseudo=pseudo.astype(np.int16), boundary=boundary.astype(np.float16))
        return self._put(d, pseudo, boundary)

    def _put(self, d, pseudo, boundary):
        d[self.pseudo_key] = torch.as_tensor(np.asarray(pseudo, dtype=np.int64))[None]
        d[self.boundary_key] = torch.as_tensor(np.asarray(boundary, dtype=np.float32))[None]
        return d
