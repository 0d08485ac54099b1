"""Coarse-to-fine solving, so that refinement stays interactive on full-size CT.

A dense CRF or a random walk over a 512 x 512 x 100 box (26 M voxels) takes over ten seconds on
two cores. Instead, when the box holds more than ``max_voxels``:

1. the box is block-averaged by integer factors ``f = (f_x, f_y, f_z)`` chosen by
   :func:`coarse_factors` (always coarsening the axis whose blocks are currently finest in mm, so
   the coarse grid drifts toward isotropic voxels), strokes are block-voted (:func:`block_seeds`);
2. the method solves the coarse grid;
3. its probabilities are copied back to the fine grid (:func:`expand`), and only the band of
   voxels within one coarse voxel of the coarse boundary (:func:`boundary_band`) is solved again at
   full resolution, by a random walk whose other voxels are fixed to the coarse class; this puts
   the boundary back on the image's edges at the input resolution.

All functions take and return plain arrays; shapes are written ``(H, W, D)`` for a volume and
``(h, w, d) = ceil((H, W, D) / f)`` for its coarse grid.
"""

from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

from .convention import NO_SEED


def coarse_factors(shape: Sequence[int], spacing: Sequence[float], max_voxels: int) -> Tuple[int, int, int]:
    """Smallest integer block factors (one axis at a time, the finest in mm first) that bring
    ``prod(ceil(shape / f))`` to at most ``max_voxels``; ``(1, 1, 1)`` when it already is."""
    shape, spacing = np.asarray(shape, int), np.asarray(spacing, float)
    f = np.ones(3, int)
    while int(np.prod(-(-shape // f))) > max_voxels:
        can = -(-shape // f) > 1
        if not can.any():
            break
        size = np.where(can, spacing * f, np.inf)
        f[int(np.argmin(size))] += 1
    return tuple(int(x) for x in f)


def _pad(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    pad = [(0, (-n) % f) for n, f in zip(array.shape[-3:], factors)]
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + pad, mode="edge")


def _blocks(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """``(..., h, fx, w, fy, d, fz)`` view of the edge-padded array."""
    a = _pad(array, factors)
    lead = a.shape[:-3]
    h, w, d = (n // f for n, f in zip(a.shape[-3:], factors))
    return a.reshape(lead + (h, factors[0], w, factors[1], d, factors[2]))


def block_mean(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean over ``factors`` blocks of the last three axes: ``(..., H, W, D)`` -> ``(..., h, w, d)``."""
    if tuple(factors) == (1, 1, 1):
        return np.asarray(array, dtype=np.float32)
    b = _blocks(np.asarray(array, dtype=np.float32), factors)
    return b.mean(axis=(-5, -3, -1), dtype=np.float32)


def block_any(mask: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """``(H, W, D)`` bool -> ``(h, w, d)``: a block is set when any of its voxels is."""
    return _blocks(np.asarray(mask, bool), factors).any(axis=(-5, -3, -1))


def block_seeds(seeds: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Strokes on the coarse grid: a block takes the class of its stroke voxels, and stays
    ``NO_SEED`` when it holds none or strokes of two classes (the fine band decides there).

    ``(H, W, D)`` class index or ``NO_SEED`` -> ``(h, w, d)``.
    """
    seeds = np.asarray(seeds)
    b = _blocks(seeds, factors)
    b = np.moveaxis(b, (1, 3, 5), (3, 4, 5)).reshape(b.shape[0], b.shape[2], b.shape[4], -1)
    stroked = b != NO_SEED
    low = np.where(stroked, b, np.iinfo(np.int64).max).min(axis=-1)
    high = np.where(stroked, b, np.iinfo(np.int64).min).max(axis=-1)
    return np.where(stroked.any(axis=-1) & (low == high), low, NO_SEED).astype(np.int64)


def expand(coarse: np.ndarray, factors: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Each coarse voxel copied over its block: ``(..., h, w, d)`` -> ``(..., H, W, D)``."""
    out = coarse
    for ax, f in enumerate(factors):
        if f > 1:
            out = np.repeat(out, f, axis=out.ndim - 3 + ax)
    return out[(Ellipsis,) + tuple(slice(0, n) for n in shape)]


def boundary_band(labels: np.ndarray, factors: Sequence[int], shape: Sequence[int], width: int = 1) -> np.ndarray:
    """Fine-grid voxels within ``width`` coarse voxels of a coarse class boundary.

    ``labels``: ``(h, w, d)`` coarse class index; returns ``(H, W, D)`` bool.
    """
    structure = ndimage.generate_binary_structure(3, 1)
    edge = np.zeros(labels.shape, bool)
    for ax in range(3):
        differ = np.diff(labels, axis=ax) != 0
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= differ
        edge[tuple(hi)] |= differ
    if width > 1:
        edge = ndimage.binary_dilation(edge, structure, iterations=width - 1)
    return expand(edge, factors, shape)
