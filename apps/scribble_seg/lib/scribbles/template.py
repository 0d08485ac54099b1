"""A spherical template deformed to surface points (Weak-Net: Dorent et al. / "Efficient
segmentation of 3D structures with sparse surface points", section 3.2).

The annotator clicks ``N`` points ``p_i`` (mm) on an organ's surface. For a genus-0 structure the
paper starts from a sphere and deforms it toward the points with an active surface model; here
the surface is a **radial function** around the points' centroid ``c`` (the structure must be
star-shaped from ``c``, which holds for convex-ish organs)::

    u_i = (p_i - c) / |p_i - c|,   r_i = |p_i - c|,   r_0 = mean_i r_i          (the initial sphere)
    r(u) = r_0 + sum_i w_i k(u, u_i),   k(u, v) = exp(-angle(u, v)^2 / (2 s^2))
    (K + lambda I) w = r - r_0                                               (RBF fit with smoothness)

``s`` is ``sigma_factor`` times the mean angular spacing of ``N`` points on the sphere,
``sqrt(4 pi / N)``: more points give a finer, closer surface; ``lambda`` trades interpolation for
smoothness. A voxel at ``x`` (mm) is inside when ``|x - c| <= r((x - c) / |x - c|)``; the mask is
rasterised at the image's spacing, chunked so memory stays ``O(chunk x N)``.
"""

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

MIN_POINTS = 4
"""Fewest points a structure needs (Weak-Net's clicks; fewer cannot pin a 3D surface)."""


@dataclass(frozen=True)
class RadialTemplate:
    """A fitted template: ``centre`` (mm, (3,)), ``directions`` (N, 3) unit vectors, RBF
    ``weights`` (N,), base radius ``radius`` (mm) and kernel width ``sigma`` (radians)."""

    centre: np.ndarray
    directions: np.ndarray
    weights: np.ndarray
    radius: float
    sigma: float

    def radius_towards(self, u: np.ndarray) -> np.ndarray:
        """``r(u)`` (mm) for unit vectors ``u`` ``(M, 3)``."""
        angle = np.arccos(np.clip(u @ self.directions.T, -1.0, 1.0))
        return self.radius + np.exp(-(angle**2) / (2 * self.sigma**2)) @ self.weights


def fit_template(points_mm: np.ndarray, sigma_factor: float = 1.0, smoothness: float = 0.05) -> RadialTemplate:
    """Fit the radial template to surface points.

    Args:
        points_mm: ``(N, 3)`` points in mm, ``N >= MIN_POINTS``.
        sigma_factor: kernel width in units of the mean angular spacing of the points.
        smoothness: ``lambda`` (0 interpolates the points exactly).

    Returns:
        The :class:`RadialTemplate`.
    """
    p = np.asarray(points_mm, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {p.shape}")
    if len(p) < MIN_POINTS:
        raise ValueError(f"a template needs at least {MIN_POINTS} surface points, got {len(p)}")
    if not np.isfinite(p).all():
        raise ValueError("points must be finite")
    centre = p.mean(axis=0)
    offsets = p - centre
    r = np.linalg.norm(offsets, axis=1)
    if r.min() <= 1e-6:
        raise ValueError("a point lies on the centroid of the points: they do not outline a surface")
    u = offsets / r[:, None]
    sigma = sigma_factor * np.sqrt(4 * np.pi / len(p))
    template = RadialTemplate(centre, u, np.zeros(len(p)), float(r.mean()), float(sigma))
    kernel = np.exp(-(np.arccos(np.clip(u @ u.T, -1.0, 1.0)) ** 2) / (2 * sigma**2))
    weights = np.linalg.solve(kernel + smoothness * np.eye(len(p)), r - template.radius)
    return RadialTemplate(centre, u, weights, template.radius, template.sigma)


def rasterise(
    template: RadialTemplate, shape: Tuple[int, int, int], spacing: Sequence[float], chunk: int = 65536
) -> np.ndarray:
    """Boolean ``shape`` mask of the template, voxel ``(i, j, k)`` at ``(i, j, k) * spacing`` mm."""
    spacing = np.asarray(spacing, dtype=np.float64)
    mask = np.zeros(int(np.prod(shape)), dtype=bool)
    # only the box that can hold the surface
    reach = template.radius + np.abs(template.weights).sum() + spacing.max()
    lo = np.maximum(np.floor((template.centre - reach) / spacing), 0).astype(int)
    hi = np.minimum(np.ceil((template.centre + reach) / spacing) + 1, shape).astype(int)
    if (hi <= lo).any():
        return mask.reshape(shape)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    flat = np.ravel_multi_index(grid.T, shape)
    for start in range(0, len(grid), chunk):
        x = grid[start : start + chunk] * spacing - template.centre
        d = np.linalg.norm(x, axis=1)
        u = x / np.maximum(d, 1e-12)[:, None]
        mask[flat[start : start + chunk]] = d <= template.radius_towards(u)
    return mask.reshape(shape)


def surface_points(mask: np.ndarray, spacing: Sequence[float], n: int, seed: int = 0) -> np.ndarray:
    """``n`` voxel coordinates ``(n, 3)`` spread over the surface of ``mask`` (farthest-point
    sampling in mm from a random start): what an annotator clicking evenly would give."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    surface = np.argwhere(mask & ~ndimage.binary_erosion(mask))
    if len(surface) < n:
        raise ValueError(f"the structure has {len(surface)} surface voxels, fewer than the {n} points asked")
    mm = surface * np.asarray(spacing, dtype=np.float64)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(surface)))]
    dist = np.linalg.norm(mm - mm[chosen[0]], axis=1)
    for _ in range(n - 1):
        chosen.append(int(dist.argmax()))
        dist = np.minimum(dist, np.linalg.norm(mm - mm[chosen[-1]], axis=1))
    return surface[chosen]


def boundary_weights(labels: np.ndarray, spacing: Sequence[float], distance_mm: float, low: float) -> np.ndarray:
    """``W`` ``(H, W, D)`` float32: 1 within ``distance_mm`` of a voxel whose 6-neighbour has
    another class in ``labels`` (class indices), ``low`` elsewhere (``low`` everywhere if the
    volume holds one class)."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    for ax in range(labels.ndim):
        a = [slice(None)] * labels.ndim
        b = [slice(None)] * labels.ndim
        a[ax], b[ax] = slice(0, -1), slice(1, None)
        diff = labels[tuple(a)] != labels[tuple(b)]
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    if not edge.any():
        return np.full(labels.shape, low, dtype=np.float32)
    distance = ndimage.distance_transform_edt(~edge, sampling=[float(s) for s in spacing])
    return np.where(distance <= distance_mm, 1.0, low).astype(np.float32)
