"""Dictionary transforms of the connected-component rules of :mod:`lib.scribbles.components`
(inference's ``largest_component=object`` and ``largest_component=<anchor name>``)."""

import numpy as np
import torch
from monai.transforms import MapTransform

from lib.scribbles.components import anchored_labels, largest_object_labels


class _ComponentsOfEachMap(MapTransform):
    """Applies ``self.rule`` to each ``(1, ...)`` class-index map of the keys (a tensor keeps its
    type and meta)."""

    def rule(self, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if isinstance(x, torch.Tensor):
                out = np.stack([self.rule(a) for a in x.detach().cpu().numpy()])
                d[key] = x.clone().copy_(torch.as_tensor(out))
            else:
                d[key] = np.stack([self.rule(a) for a in np.asarray(x)])
        return d


class KeepLargestObjectd(_ComponentsOfEachMap):
    """:func:`largest_object_labels` on ``(1, ...)`` class-index maps."""

    def rule(self, labels):
        return largest_object_labels(labels)


class KeepAnchoredComponentsd(_ComponentsOfEachMap):
    """:func:`anchored_labels` on ``(1, ...)`` class-index maps, anchored on class index ``anchor``."""

    def __init__(self, keys, anchor: int, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.anchor = int(anchor)

    def rule(self, labels):
        return anchored_labels(labels, self.anchor)
