"""Coarse-to-fine solving, so that refinement stays interactive on full-size CT.

A dense CRF or a random walk over a 512 x 512 x 100 box (26 M voxels) takes over ten seconds on
two cores. Instead, when the box holds more than ``max_voxels``, it is solved on a pyramid of
grids, each one made of 2 x 2 x 2 (or 2 x 2 x 1, ...) blocks of the one below:

1. :func:`pyramid` picks the halvings, always of the axes whose blocks are finest in mm, so the
   coarse grid drifts toward isotropic voxels, until the grid holds at most ``max_voxels``;
   intensities are block-averaged (:func:`block_mean`), strokes block-voted (:func:`coarse_seeds`);
2. the method solves the coarsest grid;
3. going down one level at a time, every voxel keeps its parent's class except the band of voxels
   whose parent touches a class boundary (:func:`band_children`); the band is solved again by a
   random walk whose other voxels are fixed to their parent's class.

The band at each level is one parent wide on each side of the boundary, i.e. two voxels of that
level, so the work per level grows with the boundary's area at that level, not with the volume:
the full-resolution solve of a lung on a 512 x 512 x 100 CT touches ~1 % of its voxels.

All functions take and return plain arrays; shapes are written ``(H, W, D)`` for a grid and
``(h, w, d) = ceil((H, W, D) / r)`` for the grid above it with block ratio ``r``. Strokes travel
between levels as flat indices and classes, so nothing of the full volume's size is built for them.
"""

from typing import List, Sequence, Tuple

import numpy as np

Ratio = Tuple[int, int, int]


def pyramid(shape: Sequence[int], spacing: Sequence[float], max_voxels: int) -> List[Ratio]:
    """Block ratios (each axis 1 or 2) from the input grid upward, until the grid holds at most
    ``max_voxels``: ``[]`` when it already does.

    Each level halves the axes whose block size in mm is within 1.5x of the finest one (those of
    size 1 excepted), e.g. 0.76 x 0.76 x 3.3 mm gives (2, 2, 1), (2, 2, 1), (2, 2, 2).
    """
    shape, size = np.asarray(shape, int), np.asarray(spacing, float).copy()
    ratios: List[Ratio] = []
    while int(np.prod(shape)) > max_voxels and (shape > 1).any():
        can = shape > 1
        r = np.where(can & (size <= 1.5 * size[can].min()), 2, 1)
        ratios.append(tuple(int(x) for x in r))
        shape, size = -(-shape // r), size * r
    return ratios


def coarse_shape(shape: Sequence[int], ratio: Sequence[int]) -> Tuple[int, int, int]:
    return tuple(-(-int(n) // int(r)) for n, r in zip(shape, ratio))


def block_mean(array: np.ndarray, ratio: Sequence[int]) -> np.ndarray:
    """Mean over ``ratio`` blocks of the last three axes, the array edge-padded to whole blocks:
    ``(..., H, W, D)`` -> ``(..., h, w, d)`` float32."""
    a = np.asarray(array, dtype=np.float32)
    if tuple(ratio) == (1, 1, 1):
        return a
    pad = [(0, (-n) % r) for n, r in zip(a.shape[-3:], ratio)]
    if any(p for _, p in pad):
        a = np.pad(a, [(0, 0)] * (a.ndim - 3) + pad, mode="edge")
    h, w, d = (n // r for n, r in zip(a.shape[-3:], ratio))
    blocks = a.reshape(a.shape[:-3] + (h, ratio[0], w, ratio[1], d, ratio[2]))
    return blocks.mean(axis=(-5, -3, -1), dtype=np.float32)


def coarse_index(index: np.ndarray, shape: Sequence[int], ratio: Sequence[int]) -> np.ndarray:
    """Flat indices on a ``shape`` grid -> flat indices of their parents on the grid above."""
    coords = np.unravel_index(index, tuple(shape))
    up = coarse_shape(shape, ratio)
    return np.ravel_multi_index(tuple(c // r for c, r in zip(coords, ratio)), up)


def coarse_seeds(
    index: np.ndarray, classes: np.ndarray, shape: Sequence[int], ratio: Sequence[int]
) -> Tuple[np.ndarray, np.ndarray]:
    """Strokes on the grid above: a block takes the class of its stroke voxels, and stays unseeded
    when it holds strokes of two classes (the finer level decides there).

    ``index``, ``classes``: flat indices on a ``shape`` grid and their classes, ``(n,)`` each.
    Returns the same for the grid above, sorted by index.
    """
    parent = coarse_index(index, shape, ratio)
    order = np.lexsort((classes, parent))
    parent, classes = parent[order], classes[order]
    first = np.r_[True, parent[1:] != parent[:-1]]
    start = np.flatnonzero(first)
    low = classes[start]
    high = classes[np.r_[start[1:], parent.size] - 1]
    keep = low == high
    return parent[start][keep], low[keep]


def boundary(labels: np.ndarray) -> np.ndarray:
    """``(h, w, d)`` class index -> bool: voxels with a 6-neighbour of another class."""
    edge = np.zeros(labels.shape, bool)
    for ax in range(labels.ndim):
        differ = np.diff(labels, axis=ax) != 0
        lo, hi = [slice(None)] * labels.ndim, [slice(None)] * labels.ndim
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= differ
        edge[tuple(hi)] |= differ
    return edge


def band_children(edge: np.ndarray, ratio: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Flat indices, on the ``shape`` grid below, of the children of the ``edge`` voxels
    (``(h, w, d)`` bool); sorted."""
    coords = np.stack(np.nonzero(edge), axis=1)  # (n, 3)
    offsets = np.stack(np.meshgrid(*[np.arange(r) for r in ratio], indexing="ij"), axis=-1).reshape(-1, 3)
    child = coords[:, None, :] * np.asarray(ratio) + offsets[None]  # (n, prod(ratio), 3)
    child = child.reshape(-1, 3)
    inside = (child < np.asarray(shape)).all(axis=1)
    return np.sort(np.ravel_multi_index(tuple(child[inside].T), tuple(shape)))


def expand(coarse: np.ndarray, ratio: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Each coarse voxel copied over its block: ``(..., h, w, d)`` -> ``(..., H, W, D)``."""
    coarse = np.asarray(coarse)
    lead, (h, w, d) = coarse.shape[:-3], coarse.shape[-3:]
    rx, ry, rz = ratio
    full = np.empty(lead + (h * rx, w * ry, d * rz), dtype=coarse.dtype)
    full.reshape(lead + (h, rx, w, ry, d, rz))[...] = coarse.reshape(lead + (h, 1, w, 1, d, 1))
    if full.shape[-3:] == tuple(shape):
        return full
    return np.ascontiguousarray(full[(Ellipsis,) + tuple(slice(0, n) for n in shape)])
