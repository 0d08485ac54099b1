"""Images kept in memory between the requests of one annotation session.

A radiologist correcting a segment sends one refinement request per stroke, each naming the same
image. Reading and decompressing a 512 x 512 x 100 CT costs ~0.5 s of the round trip every time;
:class:`LoadedImaged` reads it once and serves the next strokes from memory. Entries are keyed by
path, size and modification time, so an image replaced on disk is read again; the least recently
used one is dropped beyond ``capacity``. :meth:`LoadedImages.preload` reads an image ahead, on a
thread, when the server hands it out for annotation (Next Sample): the first stroke on it then
waits for the solve only. A request for an image being read waits for that read instead of
starting a second one.
"""

import copy
import logging
import os
import threading
from collections import OrderedDict
from typing import Dict, Hashable, Mapping, Tuple

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, MapTransform

from .readers import COrderNibabelReader

logger = logging.getLogger(__name__)


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
        self._reading: Dict[Tuple[str, int, int], threading.Event] = {}
        self._lock = threading.Lock()
        self._load = Compose(
            [LoadImaged("image", image_only=True, reader=COrderNibabelReader()), EnsureChannelFirstd("image")]
        )
        self.hits = self.misses = 0

    def __call__(self, path: str) -> MetaTensor:
        image = self._get(path, count=True)
        return MetaTensor(image.as_tensor(), meta=copy.deepcopy(image.meta), applied_operations=[])

    def has(self, path: str) -> bool:
        """Whether ``path`` (as it is on disk now) is in memory."""
        with self._lock:
            return self._key(path) in self._entries

    def preload(self, path: str) -> threading.Thread:
        """Read ``path`` into memory on a daemon thread (a failure is logged, not raised: the
        request that needs the image reads it again and reports the error)."""

        def read():
            try:
                self._get(path, count=False)
            except Exception as e:  # noqa: BLE001 -- a preload is a hint
                logger.warning(f"preloading {path} failed: {e}")

        thread = threading.Thread(target=read, name="preload-image", daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _key(path: str) -> Tuple[str, int, int]:
        stat = os.stat(path)
        return os.path.abspath(path), stat.st_size, stat.st_mtime_ns

    def _get(self, path: str, count: bool) -> MetaTensor:
        key = self._key(path)
        while True:
            with self._lock:
                image = self._entries.get(key)
                if image is not None:
                    self._entries.move_to_end(key)
                    self.hits += count
                    return image
                reading = self._reading.get(key)
                if reading is None:  # this caller reads it
                    reading = self._reading[key] = threading.Event()
                    break
            reading.wait()  # another caller is reading it; then look again
        try:
            image = self._load({"image": path})["image"]
            with self._lock:
                self.misses += count
                self._entries[key] = image
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            return image
        finally:
            with self._lock:
                self._reading.pop(key, None)
            reading.set()


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
