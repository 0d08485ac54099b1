"""Scribble refinement of a prior: crop to what the user touched, solve, paste back.

``refine`` is the one entry point of the ``crf`` and ``random_walk`` infer tasks:

1. the box = bounding box of the foreground strokes (all strokes if there are only background
   ones) and of ``region`` (the prior's foreground when the prior is spatial: a model's or the
   current segmentation) grown by ``margin_mm``, within the Slicer ROI when one is given;
   background strokes outside it only matter through the prior;
2. the chosen solver runs on the box (for the random walk, the box's inner faces are fixed to
   the prior);
3. outside the box the prior is returned unchanged.

Returns probabilities ``(C, H, W, D)``; the label map is their argmax.
"""

from typing import Optional, Sequence, Union

import numpy as np

from .convention import BACKGROUND_CLASS, NO_SEED
from .crf import DenseCRFParams, dense_crf
from .crop import roi_box
from .random_walk import RandomWalkParams, random_walk

METHODS = ("crf", "random_walk")
DEFAULT_MARGIN_MM = {"crf": 20.0, "random_walk": 25.0}
"""Margin of the solved box. Held-out phantoms (256 x 256 x 32, binary mode): the CRF keeps its
Dice from 25 mm down to 20 mm (0.921) at 27 % less time; the random walk loses Dice below 25 mm
without a spatial prior (0.58 at 15 mm vs 0.62)."""


def refine(method: str, image: np.ndarray, seeds: np.ndarray, spacing: Sequence[float], prior: np.ndarray,
           params: Union[DenseCRFParams, RandomWalkParams], region: Optional[np.ndarray] = None,
           margin_mm: Optional[float] = None, roi: Optional[Sequence[int]] = None) -> np.ndarray:
    """Refine ``prior`` (``(C, H, W, D)``) from ``seeds`` with ``method`` (``crf`` or ``random_walk``);
    ``margin_mm`` defaults to :data:`DEFAULT_MARGIN_MM` of the method."""
    if method not in METHODS:
        raise ValueError(f"unknown refinement method {method!r}; choose one of {METHODS}")
    margin_mm = DEFAULT_MARGIN_MM[method] if margin_mm is None else float(margin_mm)
    image, seeds, prior = np.asarray(image), np.asarray(seeds), np.asarray(prior, dtype=np.float32)
    if image.ndim != 3 or seeds.shape != image.shape or prior.shape[1:] != image.shape:
        raise ValueError(f"image {image.shape}, seeds {seeds.shape} and prior {prior.shape} do not match")
    stroked = seeds != NO_SEED
    if not stroked.any():
        raise ValueError("no scribbles: draw at least one stroke")
    foreground = stroked & (seeds != BACKGROUND_CLASS)
    masks = [foreground if foreground.any() else stroked] + ([np.asarray(region, bool)] if region is not None else [])
    box = roi_box(masks, spacing, margin_mm, roi)
    img, sd, pr = image[box], seeds[box], prior[(slice(None),) + box]
    if method == "crf":
        q = dense_crf(img, pr, spacing, sd, params)
    else:
        faces = np.zeros(img.shape, bool)
        for ax in range(3):
            idx = [slice(None)] * 3
            if box[ax].start > 0:
                idx[ax] = 0
                faces[tuple(idx)] = True
            if box[ax].stop < image.shape[ax]:
                idx[ax] = -1
                faces[tuple(idx)] = True
        q = random_walk(img, sd, spacing, prior.shape[0], pr, params, fixed=faces)
    out = prior.copy()
    out[(slice(None),) + box] = q
    return out
