"""Scribble2D5's label propagation as a pipeline step, cached on disk by content."""

import hashlib
import logging
import os
import tempfile
from dataclasses import asdict
from typing import Optional, Sequence

import numpy as np
import torch
from monai.transforms import Transform

from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.propagation import PropagationParams, propagate

logger = logging.getLogger(__name__)


class PropagateScribblesd(Transform):
    """Adds ``pseudo`` (supervoxel pseudo scribble map) and ``boundary`` (static pseudo boundary),
    both ``(1, H, W, D)``, computed from ``image`` and the scribble map ``label`` at ``spacing``.

    Results are cached in ``cache_dir`` under a hash of the image and scribble contents, the
    spacing, the parameters and the convention: a volume is propagated once, not per epoch, and a
    retraining after new scribbles on other volumes reuses it. ``hits`` / ``misses`` count lookups.
    """

    def __init__(self, convention: ScribbleConvention, spacing: Sequence[float], params: PropagationParams,
                 cache_dir: Optional[str] = None, image_key: str = "image", label_key: str = "label",
                 pseudo_key: str = "pseudo", boundary_key: str = "boundary"):
        self.convention, self.spacing, self.params = convention, [float(s) for s in spacing], params
        self.cache_dir = cache_dir
        self.image_key, self.label_key, self.pseudo_key, self.boundary_key = image_key, label_key, pseudo_key, boundary_key
        self.hits = self.misses = 0

    def _key(self, image: np.ndarray, label: np.ndarray) -> str:
        h = hashlib.sha1()
        for a in (np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(label, dtype=np.int64)):
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        h.update(repr((self.spacing, sorted(asdict(self.params).items()), self.convention.values)).encode())
        return h.hexdigest()

    def __call__(self, data):
        d = dict(data)
        image = np.asarray(d[self.image_key])[0]
        label = np.asarray(d[self.label_key])[0]
        path = None
        if self.cache_dir:
            path = os.path.join(self.cache_dir, self._key(image, label) + ".npz")
            if os.path.exists(path):
                try:
                    with np.load(path) as cached:
                        pseudo, boundary = cached["pseudo"], cached["boundary"]
                    self.hits += 1
                    return self._put(d, pseudo, boundary)
                except (OSError, KeyError, ValueError):
                    logger.warning(f"propagation cache {path} unreadable: recomputing")
        self.misses += 1
        pseudo, boundary = propagate(image, label, self.spacing, self.convention, self.params)
        if path:
            os.makedirs(self.cache_dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npz")
            os.close(fd)
            np.savez_compressed(tmp, pseudo=pseudo.astype(np.int16), boundary=boundary.astype(np.float16))
            os.replace(tmp, path)  # atomic: concurrent runs never read a partial file
        return self._put(d, pseudo, boundary)

    def _put(self, d, pseudo, boundary):
        d[self.pseudo_key] = torch.as_tensor(np.asarray(pseudo, dtype=np.int64))[None]
        d[self.boundary_key] = torch.as_tensor(np.asarray(boundary, dtype=np.float32))[None]
        return d
