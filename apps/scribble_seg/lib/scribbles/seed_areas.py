"""Seed areas: scribbles grown by a random walk, kept only where the walk is sure (Can et al.,
"Learning to segment medical images with scribble-supervision alone", DLMIA 2018, section 2.1).

With ``P_c`` the probability that a random walker started at a voxel first reaches a stroke of
class ``c`` (Grady 2006; :func:`lib.scribbles.random_walk.random_walk` with no data term)::

    seed_area(i) = c          if P_c(i) > tau   (tau = 0.99 for cardiac images in the paper)
                   NO_SEED    otherwise (unknown: ignored by the partial cross-entropy)

Strokes keep their class (``P`` is one-hot there). The paper ran this per 2D slice on
intensities scaled to [-1, 1] with ``beta = 1000`` per pixel; here it is 3D on the 6-connected
grid of :func:`lib.scribbles.random_walk.edge_weights`, whose conductances make walkers diffuse as far
in mm through thick slices as in plane, with intensities robustly normalised to [0, 1]
(:func:`lib.scribbles.prior.normalise_intensity`), so strokes on a few slices grow into the
slices between them.
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
) -> np.ndarray:
    """Grow strokes into confident seed areas.

    Args:
        image: ``(H, W, D)`` intensities.
        seeds: ``(H, W, D)`` class index at strokes, ``NO_SEED`` elsewhere.
        spacing: voxel size in mm per axis.
        num_classes: ``C`` (background included).
        tau: probability a voxel's class must exceed, in ``[0, 1)``; 0 labels every voxel.
        beta: random-walk edge sensitivity (see :class:`lib.scribbles.random_walk.RandomWalkParams`).

    Returns:
        ``(H, W, D)`` int64 class index inside the seed areas, ``NO_SEED`` outside.
    """
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    seeds = np.asarray(seeds)
    # walkers absorbed at a small rate (a flat prior, as the strokes-only refinement): far from every
    # stroke the walk stays undecided rather than handing the voxel to whichever stroke it reaches
    flat = np.full((num_classes,) + seeds.shape, 1.0 / num_classes, dtype=np.float32)
    probabilities = random_walk(
        image, seeds, spacing, num_classes, flat, params=RandomWalkParams(beta=beta, gamma=ABSORPTION)
    )
    grown = np.where(probabilities.max(axis=0) > tau, probabilities.argmax(axis=0), NO_SEED)
    return np.where(seeds != NO_SEED, seeds, grown).astype(np.int64)
