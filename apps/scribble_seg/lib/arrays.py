"""Copies of large volumes between C and Fortran memory order, block by block.

NIfTI stores voxels x-fastest (Fortran order), the app's array code works in C order, and MONAI
Label's ITK writer hands ITK the transpose of what it writes. numpy copies between the two orders
by walking one of them a whole row or slice apart per voxel, so every voxel costs a cache miss:
~0.2 s for a 512 x 512 x 100 label map each way, a tenth of an interactive refinement's round
trip. :func:`in_order` copies sub-blocks small enough for both sides to stay in cache.
"""

import itertools
from typing import Tuple

import numpy as np

BLOCK: Tuple[int, int, int] = (32, 32, 16)
"""Sub-block copied at a time: 16 kB of uint8, read and written within the CPU's L1/L2 caches."""


def in_order(array: np.ndarray, order: str) -> np.ndarray:
    """``array`` contiguous in ``order`` (``"C"`` or ``"F"``): itself when it already is, else a
    copy, made block by block (:data:`BLOCK`) for a 3D array. Same shape, dtype and values."""
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    a = np.asarray(array)
    if a.flags.c_contiguous if order == "C" else a.flags.f_contiguous:
        return a
    if a.ndim != 3:
        return np.asarray(a, order=order)
    out = np.empty(a.shape, dtype=a.dtype, order=order)
    for corner in itertools.product(*(range(0, n, b) for n, b in zip(a.shape, BLOCK))):
        block = tuple(slice(c, c + b) for c, b in zip(corner, BLOCK))
        out[block] = a[block]
    return out
