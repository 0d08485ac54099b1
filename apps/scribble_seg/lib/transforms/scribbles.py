"""MONAI dictionary transforms that wrap :mod:`lib.scribbles.convention` for pipelines."""

from typing import Hashable, Mapping, Optional

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from lib.scribbles.convention import ScribbleConvention, to_scribble_map
from lib.scribbles.propagation import background_beyond_strokes


def _like(array: np.ndarray, ref) -> torch.Tensor:
    out = torch.as_tensor(array)
    if isinstance(ref, MetaTensor):
        return MetaTensor(out, meta=dict(ref.meta), applied_operations=list(ref.applied_operations))
    return out


class ScribbleMapd(MapTransform):
    """A loaded label ``(1, H, W, D)`` -> scribble map of ``convention`` (int64), once, at load.

    The label is mapped by name through ``data[label_info_key]`` when present (what Slicer
    saves), else validated as already in the convention. With ``dense=True`` the label is a dense
    class-index mask and becomes a fully annotated scribble map (the ``full`` recipe).
    With ``image_key`` the spatial shape is checked against the image.

    Raises:
        ValueError: naming the label and what is wrong with it.
    """

    def __init__(
        self,
        keys: KeysCollection,
        convention: ScribbleConvention,
        label_info_key: str = "label_info",
        dense: bool = False,
        image_key: Optional[str] = "image",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.convention, self.label_info_key, self.dense, self.image_key = convention, label_info_key, dense, image_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            name = getattr(label, "meta", {}).get("filename_or_obj", key)
            if self.image_key in d and tuple(d[self.image_key].shape[1:]) != tuple(label.shape[1:]):
                raise ValueError(
                    f"label {name} has shape {tuple(label.shape[1:])}, its image {tuple(d[self.image_key].shape[1:])}"
                )
            array = np.asarray(label)
            try:
                if self.dense:
                    converted = self.convention.from_dense(np.round(array).astype(np.int64))
                else:
                    converted = to_scribble_map(array, self.convention, d.get(self.label_info_key))
            except ValueError as e:
                raise ValueError(f"label {name}: {e}") from None
            d[key] = _like(converted, label)
        return d


class AnnotatedMaskd(MapTransform):
    """``data[output_key]`` = annotated voxels of the scribble map ``data[key]`` (for patch sampling)."""

    def __init__(self, keys: KeysCollection, convention: ScribbleConvention, output_key: str = "annotated"):
        super().__init__(keys)
        self.convention, self.output_key = convention, output_key

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.convention.annotated(d[key]).to(torch.uint8)
        return d


class BackgroundBeyondStrokesd(MapTransform):
    """Each scribble map of ``keys`` ``(1, H, W, D)`` with its slices beyond the first and last
    stroked one (along the last axis) made background strokes
    (:func:`lib.scribbles.propagation.background_beyond_strokes`): right when every slice that
    shows a structure was scribbled, so the stroke-less slices hold none."""

    def __init__(self, keys: KeysCollection, convention: ScribbleConvention, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.convention = convention

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            scribbles = np.asarray(d[key])[0]
            extended = background_beyond_strokes(scribbles, scribbles, self.convention)
            d[key] = _like(extended[None].astype(np.int64), d[key])
        return d
