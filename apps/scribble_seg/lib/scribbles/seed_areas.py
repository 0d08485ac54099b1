"""Seed areas: scribbles grown by a random walk, kept only where the walk is sure (Can et al.,
"Learning to segment medical images with scribble-supervision alone", DLMIA 2018, section 2.1).

With ``P_c`` the probability that a random walker started at a voxel first reaches a stroke of
class ``c`` (Grady 2006; :func:`lib.scribbles.random_walk.random_walk` with no data term)::

    seed_area(i) = c          if P_c(i) > tau   (tau = 0.99 for cardiac images in the paper)
                   NO_SEED    otherwise (unknown: ignored by the partial cross-entropy)

Strokes keep their class (``P`` is one-hot there). Two walks:

* ``per_slice=False`` (default): 3D on the 6-connected grid of
  :func:`lib.scribbles.random_walk.edge_weights`, whose conductances make walkers diffuse as far in
  mm through thick slices as in plane, so strokes on a few slices grow into the slices between
  them;
* ``per_slice=True``: the paper's, one 2D walk per axial slice that holds a stroke (intensities
  normalised per slice); slices without a stroke get no seed area.

Intensities are robustly normalised to [0, 1] (:func:`lib.scribbles.prior.normalise_intensity`);
the paper scaled them to [-1, 1] with ``beta = 1000`` per pixel. ``benchmarks/seed_areas.py``
measures both walks' coverage and precision against the dense truth.
"""

from typing import Sequence

import numpy as np

from .convention import NO_SEED
from .random_walk import RandomWalkParams, random_walk

ABSORPTION = 1e-4
"""Data-term weight toward the uniform distribution (see :func:`lib.scribbles.refine.from_strokes`)."""
DEFAULT_TAU = 0.99
"""Can et al.'s threshold for cardiac MR (``rw_threshold`` in their configs)."""


def seed_areas(
    image: np.ndarray,
    seeds: np.ndarray,
    spacing: Sequence[float],
    num_classes: int,
    tau: float = DEFAULT_TAU,
    beta: float = RandomWalkParams.beta,
    per_slice: bool = False,
) -> np.ndarray:
    """Grow strokes into confident seed areas.

    Args:
        image: ``(H, W, D)`` intensities.
        seeds: ``(H, W, D)`` class index at strokes, ``NO_SEED`` elsewhere.
        spacing: voxel size in mm per axis.
        num_classes: ``C`` (background included).
        tau: probability a voxel's class must exceed, in ``[0, 1)``; 0 labels every voxel.
        beta: random-walk edge sensitivity (see :class:`lib.scribbles.random_walk.RandomWalkParams`).
        per_slice: one 2D walk per stroked axial slice (last axis) instead of one 3D walk.

    Returns:
        ``(H, W, D)`` int64 class index inside the seed areas, ``NO_SEED`` outside.
    """
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    seeds = np.asarray(seeds)
    if per_slice:
        grown = np.full(seeds.shape, NO_SEED, dtype=np.int64)
        for z in np.flatnonzero((seeds != NO_SEED).any(axis=(0, 1))):
            grown[..., z : z + 1] = seed_areas(
                image[..., z : z + 1], seeds[..., z : z + 1], spacing, num_classes, tau, beta
            )
        return grown
    # walkers absorbed at a small rate (a flat prior, as the strokes-only refinement): far from every
    # stroke the walk stays undecided rather than handing the voxel to whichever stroke it reaches
    # on the raw intensities: tau and the seed areas' precision were measured on them
    flat = np.full((num_classes,) + seeds.shape, 1.0 / num_classes, dtype=np.float32)
    params = RandomWalkParams(beta=beta, gamma=ABSORPTION, smoothing=0.0)
    probabilities = random_walk(image, seeds, spacing, num_classes, flat, params=params)
    grown = np.where(probabilities.max(axis=0) > tau, probabilities.argmax(axis=0), NO_SEED)
    return np.where(seeds != NO_SEED, seeds, grown).astype(np.int64)
