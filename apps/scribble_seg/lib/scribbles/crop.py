"""Region of interest around what the user touched: refinement only needs to solve near the
structure, and solving a margin-padded box instead of the whole volume is what makes it fast."""

from typing import Optional, Sequence, Tuple

import numpy as np


def roi_box(
    masks: Sequence[np.ndarray], spacing: Sequence[float], margin_mm: float, roi: Optional[Sequence[int]] = None
) -> Tuple[slice, ...]:
    """Slices of the bounding box of the union of ``masks`` grown by ``margin_mm`` (per-axis voxels
    from ``spacing``), intersected with a Slicer ROI ``[x0, x1, y0, y1, z0, z1]`` when given.

    Raises:
        ValueError: an ROI outside the volume or empty.
    """
    shape = np.asarray(masks[0].shape)
    union = np.zeros(masks[0].shape, dtype=bool)
    for m in masks:
        union |= m
    if union.any():
        # extent per axis from the projections (no argwhere: masks can hold millions of voxels)
        extent = [np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        first, last = np.array([e[0] for e in extent]), np.array([e[-1] for e in extent])
        pad = np.ceil(np.minimum(margin_mm / np.asarray(spacing, dtype=float), shape)).astype(int)
        lo, hi = np.maximum(first - pad, 0), np.minimum(last + pad + 1, shape)
    else:
        lo, hi = np.zeros(3, int), shape
    if roi:
        r = np.asarray(roi, dtype=int).reshape(3, 2)
        if np.any(r[:, 0] >= r[:, 1]) or np.any(r[:, 0] >= shape) or np.any(r[:, 1] <= 0):
            raise ValueError(f"roi {list(roi)} is empty or outside the volume of shape {tuple(shape)}")
        lo, hi = np.maximum(lo, np.maximum(r[:, 0], 0)), np.minimum(hi, np.minimum(r[:, 1], shape))
        if np.any(lo >= hi):
            raise ValueError(f"roi {list(roi)} does not contain the scribbles")
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
