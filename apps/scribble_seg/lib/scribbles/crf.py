"""3D fully connected CRF (Krähenbühl & Koltun, NIPS 2011) with scribbles clamped, after Can et al.
("Learning to segment medical images with scribble-supervision alone", DLMIA 2018).

Energy over labels ``x`` of all voxels ``i`` (mean-field inference, ``pydensecrf2``)::

    E(x) = sum_i -log P_i(x_i)
         + sum_{i<j} mu(x_i, x_j) [ w1 exp(-|p_i - p_j|^2 / 2 theta_a^2 - |I_i - I_j|^2 / 2 theta_b^2)
                                   + w2 exp(-|p_i - p_j|^2 / 2 theta_g^2) ]

with Potts ``mu``, positions ``p`` in **millimetres** (each axis divided by the voxel spacing, so
thick slices couple less), intensities ``I`` normalised to [0, 1] (robust percentiles). ``P`` is
the prior; at stroke voxels it is replaced by the stroke's one-hot clipped at ``clip`` (energy
11.5 for 1e-5, Can et al.), and the returned probabilities there are exactly one-hot: a seed
cannot change.

Defaults are Can et al.'s (``heart_scribble_crf_train.py``: w1 = 5, theta_a = 2 px,
theta_b = 0.1, w2 = 10, theta_g = 5 px, their pixels being 1.36719 mm: theta_a = 2.73 mm,
theta_g = 6.84 mm) **except w2 = 1**: their unary came from a confident network, ours is often a
softened segmentation or stroke likelihoods, and w2 = 10 smooths thin structures (the myocardium)
away. :meth:`DenseCRFParams.can_et_al` gives their exact values; every parameter is
overridable per request (:meth:`DenseCRFParams.from_request`).

Can et al. ran the CRF **per 2D slice** (``DenseCRF2D``) on z-scored intensities for 100
mean-field iterations: ``dense_crf(..., per_slice=True, zscore=True)`` with
:meth:`DenseCRFParams.can_et_al_slices`. Per slice no voxel couples to the next slice (8 mm away,
a 3D kernel with theta_g ~ 7 mm still weighs ~0.5), and theta_b = 0.1 is 0.1 standard deviation
of the intensities, as theirs, instead of 0.1 of a [0, 1] range (~0.4 SD).
"""

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from .convention import NO_SEED
from .prior import normalise_intensity
from .request_params import params_from_request

CAN_ET_AL_PIXEL_MM = 1.36719


@dataclass(frozen=True)
class DenseCRFParams:
    """Dense CRF parameters (request keys: the field names)."""

    bilateral_weight: float = 5.0
    bilateral_spatial_mm: float = 2.0 * CAN_ET_AL_PIXEL_MM
    bilateral_intensity: float = 0.1
    gaussian_weight: float = 1.0
    gaussian_spatial_mm: float = 5.0 * CAN_ET_AL_PIXEL_MM
    iterations: int = 5
    clip: float = 1e-5

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not np.isfinite(v) or v < 0 or (v == 0 and f.name not in ("bilateral_weight", "gaussian_weight")):
                raise ValueError(f"CRF parameter {f.name} must be a positive number, got {v}")
        if self.iterations > 100 or int(self.iterations) != self.iterations:
            raise ValueError(f"CRF iterations must be an integer in 1..100, got {self.iterations}")
        if self.clip >= 0.5:
            raise ValueError(f"CRF clip must be < 0.5, got {self.clip}")

    @classmethod
    def can_et_al(cls) -> "DenseCRFParams":
        """Can et al.'s values exactly (w2 = 10)."""
        return cls(gaussian_weight=10.0)

    @classmethod
    def can_et_al_slices(cls) -> "DenseCRFParams":
        """Can et al.'s values and iteration count (100), for their per-slice CRF."""
        return cls(gaussian_weight=10.0, iterations=100)

    @classmethod
    def from_request(cls, request: Mapping[str, Any], base: "DenseCRFParams" = None) -> "DenseCRFParams":
        """Defaults overridden by the request's keys of the same names (numbers or numeric strings)."""
        return params_from_request(cls, request, base, "CRF")


def dense_crf(
    image: np.ndarray,
    prior: np.ndarray,
    spacing: Sequence[float],
    seeds: np.ndarray = None,
    params: DenseCRFParams = DenseCRFParams(),
    per_slice: bool = False,
    zscore: bool = False,
) -> np.ndarray:
    """Refine ``prior`` with a 3D dense CRF, or one 2D CRF per axial slice.

    Args:
        image: ``(H, W, D)`` intensities (any range; normalised here).
        prior: ``(C, H, W, D)`` probabilities, ``C >= 2``.
        spacing: voxel size in mm per axis.
        seeds: ``(H, W, D)`` class index at strokes, ``NO_SEED`` elsewhere (clamped voxels).
        params: energy weights and sigmas.
        per_slice: one CRF per slice along the last axis (Can et al.'s), no coupling between slices.
        zscore: intensities as z-scores of the volume (Can et al.'s) instead of a robust [0, 1] range.

    Returns:
        ``(C, H, W, D)`` float32 posterior marginals.
    """
    image = np.asarray(image, dtype=np.float32)
    prior = np.asarray(prior, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, D), got shape {image.shape}")
    if prior.ndim != 4 or prior.shape[1:] != image.shape or prior.shape[0] < 2:
        raise ValueError(f"prior must be (C >= 2, {image.shape}), got {prior.shape}")
    if not np.all(np.isfinite(prior)) or prior.min() < 0:
        raise ValueError("prior must hold finite, non-negative probabilities")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing}")
    n_classes = prior.shape[0]
    prior = prior / np.maximum(prior.sum(axis=0, keepdims=True), 1e-12)
    seeded = None
    if seeds is not None:
        seeds = np.asarray(seeds)
        if seeds.shape != image.shape:
            raise ValueError(f"seeds {seeds.shape} do not match the image {image.shape}")
        seeded = seeds != NO_SEED
        if seeds[seeded].size and (seeds[seeded].min() < 0 or seeds[seeded].max() >= n_classes):
            raise ValueError(f"seeds hold class indices outside 0..{n_classes - 1}")
        onehot = np.zeros_like(prior)
        np.put_along_axis(onehot, np.where(seeded, seeds, 0)[None], 1.0, axis=0)
        prior = np.where(seeded[None], onehot, prior)

    intensity = (image - image.mean()) / max(float(image.std()), 1e-6) if zscore else normalise_intensity(image)
    if per_slice:
        slices = [
            _mean_field(intensity[..., z : z + 1], prior[..., z : z + 1], spacing, params)
            for z in range(image.shape[-1])
        ]
        q = np.concatenate(slices, axis=-1)
    else:
        q = _mean_field(intensity, prior, spacing, params)
    if seeded is not None:
        q = np.where(seeded[None], prior, q)
    return q


def _mean_field(
    intensity: np.ndarray, prior: np.ndarray, spacing: Sequence[float], params: DenseCRFParams
) -> np.ndarray:
    """The dense CRF's marginals on ``intensity`` (already scaled) from the unary ``prior``
    ``(C, H, W, D)``; a single slice is a ``(H, W, 1)`` volume, whose through-plane kernel sees no
    neighbour."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian

    n_classes, n = prior.shape[0], int(np.prod(intensity.shape))
    unary = np.ascontiguousarray(-np.log(np.clip(prior, params.clip, 1.0)).reshape(n_classes, n), dtype=np.float32)
    crf = dcrf.DenseCRF(n, n_classes)
    crf.setUnaryEnergy(unary)  # (C, N) C-contiguous float32: anything else can segfault the C++ side
    spacing = np.asarray(spacing, dtype=float)
    if params.gaussian_weight > 0:
        feats = create_pairwise_gaussian(sdims=tuple(params.gaussian_spatial_mm / spacing), shape=intensity.shape)
        crf.addPairwiseEnergy(np.ascontiguousarray(feats, dtype=np.float32), compat=params.gaussian_weight)
    if params.bilateral_weight > 0:
        feats = create_pairwise_bilateral(
            sdims=tuple(params.bilateral_spatial_mm / spacing),
            schan=(params.bilateral_intensity,),
            img=np.asarray(intensity, np.float32)[..., None],
            chdim=3,
        )
        crf.addPairwiseEnergy(np.ascontiguousarray(feats, dtype=np.float32), compat=params.bilateral_weight)
    return np.asarray(crf.inference(int(params.iterations)), dtype=np.float32).reshape(prior.shape)
