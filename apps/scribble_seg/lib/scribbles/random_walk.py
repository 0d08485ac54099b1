"""Random-walk refinement with the prior as a data term (Grady, "Random walks for image
segmentation", PAMI 2006; "Multilabel random walker image segmentation using prior models",
CVPR 2005).

On the 6-connected voxel graph, with ``h_ij`` the edge's length in mm (the voxel spacing along
its axis) and ``h`` the finest spacing::

    w_ij = (h / h_ij)^2 * exp(-beta * (I_i - I_j)^2 / (10 * std(I))),      I normalised to [0, 1], then smoothed

The exponential is skimage's edge weight on the intensity step: an edge is as hard to cross
whatever its length. The steps are read on the image smoothed by a Gaussian below a voxel
(:func:`edge_image`), so voxel-scale noise and texture inside a structure do not split it. The
factor ``(h / h_ij)^2`` is the conductance of the finite-difference
Laplacian on an anisotropic grid, so a walker diffuses as far in mm through thick slices as in
plane. (Dividing the intensity step by ``h_ij`` instead, as skimage does with ``spacing``, makes
an 8 mm step ~28x cheaper than a 1.5 mm one: walkers leak through slices and seeds grown from
strokes on a few slices stay on those slices.) On a 1 mm grid both are skimage's weights.

the probability ``x_c`` that a walker from each free voxel first reaches a stroke of class ``c``,
pulled toward the prior ``p_c`` with strength ``gamma``, minimises
``x_c^T L x_c + gamma * |x_c - p_c|^2`` with the strokes fixed (one-hot). Over the free voxels U,
with S the seeded ones::

    (L_UU + gamma * I) x_c,U = -L_US s_c + gamma * p_c,U          (one sparse SPD system per class)

solved by conjugate gradient with a Jacobi preconditioner
(:mod:`lib.scribbles.conjugate_gradient`), then normalised over classes. With ``gamma = 0`` (or
no prior) this is Grady's plain random walker. ``skimage.segmentation.random_walker`` has no data
term, hence this solver; its results match skimage's for ``gamma = 0`` and ``smoothing = 0`` on
a 1 mm grid (tested).

Made fast by :mod:`lib.scribbles.refine`, which solves only the box around what the user
touched (its faces fixed to the prior's class), and by warm-starting CG from the prior. The start
is part of the answer: where strong edges cut voxels off from every stroke (weights down to
1e-10 against an absorption of ~1e-5), the system is nearly singular there, its residual stays
small whatever the value, and CG leaves those voxels at their start -- the prior, for a flat one
an exact tie, i.e. undecided. Starting elsewhere (a coarser grid's solution), measuring the
residual in another norm (a symmetric Jacobi scaling) or iterating in float32 moves them, and
cost 0.03-0.1 mean Dice on the real development set (``benchmarks/README.md``).
Output: probabilities ``(C, H, W, D)``, not just labels.
"""

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from threadpoolctl import threadpool_limits

from .conjugate_gradient import jacobi_cg
from .convention import BACKGROUND_CLASS, NO_SEED, require_strokes
from .prior import normalise_intensity, to_window
from .request_params import params_from_request


@dataclass(frozen=True)
class RandomWalkParams:
    """Random-walk parameters (request keys: the field names).

    ``beta`` and ``smoothing`` are tuned for the walk without a data term on the real development
    set (:mod:`lib.datasets.development`) scribbled on a few axial slices; ``gamma`` on phantoms.

    Attributes:
        beta: edge sensitivity to intensity steps (intensities in [0, 1]).
        gamma: weight of the prior data term (0 = plain random walker).
        tol: relative residual of conjugate gradient.
        max_iterations: conjugate-gradient iteration cap.
        smoothing: the Gaussian the edges are read through (:func:`edge_image`), its sigma in
            finest voxel spacings (0 = the raw intensities).
    """

    beta: float = 3000.0
    gamma: float = 0.5
    tol: float = 1e-3
    max_iterations: int = 500
    smoothing: float = 0.7

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"random-walk parameter {f.name} must be a non-negative number, got {v}")
        if self.beta <= 0 or self.tol <= 0 or self.max_iterations < 1:
            raise ValueError("random walk needs beta > 0, tol > 0 and max_iterations >= 1")

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> "RandomWalkParams":
        """Defaults overridden by the request's keys of the same names (numbers or numeric strings)."""
        return params_from_request(cls, request, what="random-walk")


def absorption(spacing: Sequence[float], reach_mm: float) -> float:
    """The data-term weight ``gamma = (h / reach_mm)^2`` (``h`` the finest spacing) under which a
    walker released at a stroke travels ~``reach_mm`` before it is absorbed.

    With conductances normalised to ``h`` (:func:`edge_weights`), ``L / h^2`` is the continuous
    Laplacian in mm, so ``gamma`` per voxel is an absorption rate ``gamma / h^2`` per mm^2 and a
    diffusion length ``h / sqrt(gamma)`` mm: the same ``gamma`` reaches 4x farther on a 4x
    coarser grid, the same ``reach_mm`` equally far on every grid.
    """
    if not reach_mm > 0:
        raise ValueError(f"walk reach must be a positive length in mm, got {reach_mm}")
    return (float(min(spacing)) / float(reach_mm)) ** 2


def edge_image(image01: np.ndarray, spacing: Sequence[float], smoothing: float) -> np.ndarray:
    """``(H, W, D)`` intensities smoothed by an isotropic Gaussian of sigma ``smoothing * h`` mm
    (``h`` the finest spacing; per axis ``smoothing * h / h_axis`` voxels), the image the edge
    weights are read from.

    Noise and texture live at the voxel scale (trabecular bone, MR noise): read raw, their steps
    inside a structure are as steep as its border, and a walk from a thin stroke splits at the
    weakest edge, often inside the structure. A sigma below a voxel evens them out and keeps the
    borders; one in mm would blur small structures on fine grids (the hippocampus at 0.6 mm).
    """
    if not smoothing:
        return image01
    sigma = [smoothing * float(min(spacing)) / float(s) for s in spacing]
    return ndimage.gaussian_filter(np.asarray(image01, dtype=np.float32), sigma, truncate=3.0)


def edge_weights(step: np.ndarray, spacing_mm: float, finest_mm: float, beta: float, sigma: float) -> np.ndarray:
    """Conductances ``(h / h_ij)^2 * exp(-beta * step^2 / (10 sigma))`` of edges of length
    ``spacing_mm`` (``step``: intensity differences across them, in [0, 1] units)."""
    conductance = (finest_mm / float(spacing_mm)) ** 2
    return conductance * (np.exp(-beta * step.astype(np.float64) ** 2 / (10.0 * sigma)) + 1e-10)


def free_system(
    image01: np.ndarray,
    free: np.ndarray,
    spacing: Sequence[float],
    beta: float,
    sigma: Optional[float] = None,
    window: Optional[Tuple[float, float]] = None,
    shift: float = 0.0,
) -> Tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """The random walker's system on the free voxels only: ``L_UU + shift * I`` and the edges to
    fixed voxels.

    Only the edges that touch a free voxel are built, so the cost grows with the free set, not with
    the volume: a band of a few percent of a 512 x 512 x 100 CT costs a few percent of it.

    Args:
        image01: ``(H, W, D)`` intensities in [0, 1], or raw ones with ``window``.
        free: ``(H, W, D)`` bool, the unknowns ``U``, or their flat indices, sorted.
        spacing: voxel size in mm per axis.
        beta: edge sensitivity.
        sigma: intensity scale of the weights (default ``std(image01)``).
        window: ``(low, high)`` intensities mapped to [0, 1] (:func:`lib.scribbles.prior.to_window`)
            as the voxels next to ``U`` are read, so a large volume is never normalised whole.
        shift: added to the diagonal (the prior's weight ``gamma``).

    Returns:
        ``A`` (``(n_U, n_U)`` sparse ``L_UU + shift * I``, its column indices sorted in every row),
        and the edges from free to fixed voxels as three arrays ``(row in U, flat index of the
        fixed voxel, weight)``: ``-L_US s = sum w s_fixed``.
    """
    shape = image01.shape
    flat = np.asarray(image01).ravel()
    free = np.asarray(free)
    index = np.flatnonzero(free.ravel()) if free.dtype == bool else free.astype(np.int64, copy=False)
    value = (lambda i: flat[i].astype(np.float32)) if window is None else (lambda i: to_window(flat[i], window))
    if sigma is None:
        sigma = float(value(np.arange(0, flat.size, max(1, flat.size // 262144))).std()) or 1.0
    n = index.size
    coords = np.unravel_index(index, shape)
    at = value(index)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    finest = float(min(spacing))
    diagonal = np.zeros(n)
    # a row of L_UU in CSR order, its columns ascending: one slot per neighbour, the diagonal in
    # the middle (U is sorted by flat index, so a neighbour's column follows its offset)
    slots = {(0, -1): 0, (1, -1): 1, (2, -1): 2, (2, 1): 4, (1, 1): 5, (0, 1): 6}
    index_type = np.int32 if 7 * n < np.iinfo(np.int32).max else np.int64  # SciPy's CSR index types
    columns = np.full((n, 7), -1, dtype=index_type)
    entries = np.zeros((n, 7))
    fixed_rows, fixed_index, fixed_weights = [], [], []
    for ax in range(3):
        for sign in (-1, 1):
            u = np.flatnonzero(coords[ax] >= 1 if sign < 0 else coords[ax] < shape[ax] - 1)
            j = index[u] + sign * strides[ax]
            w = edge_weights(at[u] - value(j), spacing[ax], finest, beta, sigma)
            diagonal += np.bincount(u, weights=w, minlength=n)
            if ax == 2:  # the next voxel along the last axis, when free, is the next one in U
                pj = np.clip(u + sign, 0, n - 1)
            else:
                pj = np.minimum(np.searchsorted(index, j), n - 1)  # row of j in U, when j is free
            both = index[pj] == j
            columns[u[both], slots[ax, sign]] = pj[both]
            entries[u[both], slots[ax, sign]] = -w[both]
            fixed = ~both
            fixed_rows.append(u[fixed]), fixed_index.append(j[fixed]), fixed_weights.append(w[fixed])
    columns[:, 3] = np.arange(n)
    entries[:, 3] = diagonal + shift if shift else diagonal
    present = columns >= 0
    indptr = np.zeros(n + 1, dtype=index_type)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    A = sp.csr_matrix((entries[present], columns[present], indptr), shape=(n, n))
    return A, np.concatenate(fixed_rows), np.concatenate(fixed_index), np.concatenate(fixed_weights)


def random_walk(
    image: np.ndarray,
    seeds: np.ndarray,
    spacing: Sequence[float],
    num_classes: int,
    prior: Optional[np.ndarray] = None,
    params: RandomWalkParams = RandomWalkParams(),
    fixed: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Random walk with strokes as seeds and ``prior`` as a data term.

    Args:
        image: ``(H, W, D)`` intensities.
        seeds: ``(H, W, D)`` class index at strokes, ``NO_SEED`` elsewhere.
        spacing: voxel size in mm per axis.
        num_classes: ``C`` (background included).
        prior: optional ``(C, H, W, D)`` probabilities (data term; also the CG warm start).
        params: see :class:`RandomWalkParams`.
        fixed: optional ``(H, W, D)`` mask of extra seeds given the prior's class (background
            without a prior) -- :mod:`lib.scribbles.refine` fixes the faces of its crop this way.

    Returns:
        ``(C, H, W, D)`` float32 probabilities (one-hot at seeds).

    Raises:
        ValueError: no stroke, shape mismatch, NaN intensities.
    """
    image, seeds = np.asarray(image), np.asarray(seeds)
    if image.ndim != 3 or seeds.shape != image.shape:
        raise ValueError(f"image {image.shape} and seeds {seeds.shape} must be the same 3D shape")
    if prior is not None and prior.shape != (num_classes,) + image.shape:
        raise ValueError(f"prior must be {(num_classes,) + image.shape}, got {prior.shape}")
    require_strokes(seeds)
    labels = seeds.astype(np.int64).copy()
    if fixed is not None:
        fill = prior.argmax(0) if prior is not None else np.full(image.shape, BACKGROUND_CLASS)
        labels = np.where((labels == NO_SEED) & np.asarray(fixed, bool), fill, labels)

    flat = labels.ravel()
    free = flat == NO_SEED
    out = np.zeros((num_classes, flat.size), dtype=np.float32)
    seeded = np.flatnonzero(~free)
    out[flat[seeded], seeded] = 1.0
    if free.any():
        p = prior.reshape(num_classes, -1)[:, free] if prior is not None else None
        image01 = edge_image(normalise_intensity(image), spacing, params.smoothing)
        out[:, free] = walk_free(image01, free.reshape(image.shape), spacing, flat.__getitem__, num_classes, p, params)
    return out.reshape((num_classes,) + image.shape)


def walk_free(
    image01: np.ndarray,
    free: np.ndarray,
    spacing: Sequence[float],
    fixed_class: Callable[[np.ndarray], np.ndarray],
    num_classes: int,
    prior: Optional[np.ndarray],
    params: RandomWalkParams,
    window: Optional[Tuple[float, float]] = None,
) -> np.ndarray:
    """The random walk's probabilities on the free voxels, every other voxel fixed to one class.

    Args:
        image01: ``(H, W, D)`` intensities in [0, 1], or raw ones with ``window`` (see
            :func:`free_system`).
        free: ``(H, W, D)`` bool, the ``n`` unknowns, or their flat indices, sorted.
        spacing: voxel size in mm per axis.
        fixed_class: flat indices of fixed voxels -> their classes (only the free voxels'
            neighbours are asked).
        num_classes: ``C``.
        prior: optional ``(C, n)`` data term at the free voxels (also the CG warm start).
        params: see :class:`RandomWalkParams`.

    Returns:
        ``(C, n)`` float32 probabilities, in the order of the sorted free voxels.
    """
    gamma = params.gamma if prior is not None else 0.0
    A, rows, fixed_index, weights = free_system(image01, free, spacing, params.beta, window=window, shift=gamma)
    neighbour_class = np.asarray(fixed_class(fixed_index))
    p = np.asarray(prior, dtype=np.float64) if prior is not None else None
    out = np.zeros((num_classes, A.shape[0]))
    # the probabilities sum to 1 at every voxel (seeds one-hot, prior normalised), so the last
    # class is 1 minus the others: C - 1 solves (one for a binary segment)
    solved = []
    # conjugate gradient's dot products and norms are memory-bound BLAS calls on long vectors: a
    # second BLAS thread gains them little, and stalls them for seconds while another process (a
    # training beside the server) holds the cores, so the solves run on one
    with threadpool_limits(limits=1, user_api="blas"):
        for c in range(num_classes - 1):
            rhs = np.bincount(rows, weights=weights * (neighbour_class == c), minlength=A.shape[0])
            if p is not None:
                rhs += gamma * p[c]
            if not rhs.any() and (p is None or not p[c].any()):
                continue  # a class with neither seeds nor prior mass stays 0
            x0 = p[c] if p is not None else None
            out[c] = jacobi_cg(A, rhs, x0=x0, tol=params.tol, maxiter=int(params.max_iterations))
            solved.append(c)
    out[num_classes - 1] = 1.0 - out[solved].sum(axis=0) if solved else 1.0
    out = np.clip(out, 0.0, None)
    out /= np.maximum(out.sum(axis=0, keepdims=True), 1e-12)
    return out.astype(np.float32)
