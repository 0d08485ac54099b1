"""Images kept in memory between the requests of one annotation session.

A radiologist correcting a segment sends one refinement request per stroke, each naming the same
image. Reading and decompressing a 512 x 512 x 100 CT costs ~1 s of the round trip every time;
:class:`LoadedImaged` reads it once and serves the next strokes from memory. Entries are keyed by
path, size and modification time, so an image replaced on disk is read again; the least recently
used one is dropped beyond ``capacity``.
"""

import copy
import os
import threading
from collections import OrderedDict
from typing import Hashable, Mapping, Tuple

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, MapTransform


class LoadedImages:
    """An LRU of channel-first images read by MONAI's ``LoadImage``: ``path -> MetaTensor``.

    The tensors handed out share memory with the cached one (callers must not write into them);
    their metadata is a copy.
    """

    def __init__(self, capacity: int = 2):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: "OrderedDict[Tuple[str, int, int], MetaTensor]" = OrderedDict()
        self._lock = threading.Lock()
        self._load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])
        self.hits = self.misses = 0

    def __call__(self, path: str) -> MetaTensor:
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            image = self._entries.get(key)
            if image is not None:
                self._entries.move_to_end(key)
                self.hits += 1
        if image is None:
            image = self._load({"image": path})["image"]
            with self._lock:
                self.misses += 1
                self._entries[key] = image
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        return MetaTensor(image.as_tensor(), meta=copy.deepcopy(image.meta), applied_operations=[])


class LoadedImaged(MapTransform):
    """Dictionary wrapper of :class:`LoadedImages`: each key's path replaced by its channel-first
    image."""

    def __init__(self, keys: KeysCollection, cache: LoadedImages, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.cache = cache

    def __call__(self, data: Mapping[Hashable, str]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cache(d[key])
        return d
