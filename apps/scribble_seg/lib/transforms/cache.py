"""Per-volume results cached on disk under a hash of their inputs (contents, not file names)."""

import hashlib
import logging
import os
import tempfile
from typing import Dict, Iterable, Optional

import numpy as np

logger = logging.getLogger(__name__)


class ContentCache:
    """``.npz`` files in ``cache_dir`` keyed by the SHA-1 of arrays and a parameter string.

    Writes are atomic (temporary file + ``os.replace``): concurrent runs never read a partial
    file; an unreadable entry is reported and recomputed. ``hits`` / ``misses`` count lookups.
    """

    def __init__(self, cache_dir: Optional[str]):
        self.cache_dir = cache_dir
        self.hits = self.misses = 0

    @staticmethod
    def key(arrays: Iterable[np.ndarray], params: str) -> str:
        h = hashlib.sha1()
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
        h.update(params.encode())
        return h.hexdigest()

    def load(self, key: str) -> Optional[Dict[str, np.ndarray]]:
        if self.cache_dir:
            path = os.path.join(self.cache_dir, key + ".npz")
            if os.path.exists(path):
                try:
                    with np.load(path) as cached:
                        out = {k: cached[k] for k in cached.files}
                    self.hits += 1
                    return out
                except (OSError, KeyError, ValueError):
                    logger.warning(f"cache entry {path} unreadable: recomputing")
        self.misses += 1
        return None

    def save(self, key: str, **arrays: np.ndarray) -> None:
        if not self.cache_dir:
            return
        os.makedirs(self.cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npz")
        os.close(fd)
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, os.path.join(self.cache_dir, key + ".npz"))
