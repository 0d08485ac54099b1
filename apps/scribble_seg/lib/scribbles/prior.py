"""Prior probability maps for interactive refinement:

1. a trained model's softmax (computed by the infer task, not here);
2. :func:`segmentation_prior` -- the current segmentation carried in the label file, softened:
   the labelled class gets ``confidence``, the others share the rest (a hard mask would leave a
   CRF nothing to decide; cf. MONAI Label's ``SoftenProbSoftmax``, issue #266);
3. :func:`likelihood_prior` -- intensity alone, a baseline (with neither model nor segmentation
   the infer tasks start from :func:`lib.scribbles.refine.from_strokes` instead: on real volumes
   scribbled on a few slices, exp(-d / lambda) cuts the structure off a few mm from the strokes):
   class-conditional intensity histograms
   learnt from the strokes (MONAI Label's histogram method, generalised to C classes) times a
   proximity term for the foreground classes::

       p(c | I, x)  proportional to  p(I | c) * exp(-d_c(x) / lambda)      (c != background)
       p(bg | I, x) proportional to  p(I | bg)

   with ``d_c(x)`` the distance in mm from ``x`` to the nearest stroke of class ``c``. Intensity
   alone cannot tell a bright LV blood pool from a bright RV or fat; the proximity term keeps a
   class near where it was drawn (``lambda = None`` gives the pure histogram prior).

All take / return ``(C, H, W, D)`` float32 probabilities that sum to 1 over ``C``.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .convention import BACKGROUND_CLASS, NO_SEED, present_values
from .crop import roi_box

PERCENTILE_SAMPLES = 262144
STROKE_GAP = 2
"""Widest stroke, in voxels, that :func:`contradicted` bridges when it finds the segment a stroke
was drawn across (Slicer writes the stroke over the segment)."""
PROXIMITY_REACH = 8.0
"""The proximity term is computed within ``PROXIMITY_REACH * lambda`` of the strokes, 0 beyond."""


def intensity_window(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> Tuple[float, float]:
    """The ``low`` and ``high`` percentiles of the image (of a strided sample: same to ~1e-3).

    Raises:
        ValueError: NaN or Inf in the image.
    """
    flat = np.asarray(image).ravel()
    sample = flat[:: max(1, flat.size // PERCENTILE_SAMPLES)]
    if not np.all(np.isfinite(flat)):
        raise ValueError("image holds NaN or Inf values")
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(max(hi, lo + 1e-6))


def to_window(values: np.ndarray, window: Tuple[float, float]) -> np.ndarray:
    """Intensities mapped linearly from ``window`` to [0, 1] and clipped (float32)."""
    lo, hi = window
    return np.clip((np.asarray(values, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32, copy=False)


def normalise_intensity(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Robust min-max to [0, 1] between the ``low`` and ``high`` percentiles (float32).

    Raises:
        ValueError: NaN or Inf in the image.
    """
    return to_window(image, intensity_window(image, low, high))


def sharpened(probs: np.ndarray, power: float) -> np.ndarray:
    """``(C, ...)`` probabilities raised to ``power`` and renormalised over classes (a softmax
    temperature of ``1 / power`` on their logarithms): the argmax stays, the margins grow."""
    log = np.log(np.clip(np.asarray(probs, dtype=np.float32), 1e-30, None)) * float(power)
    log -= log.max(axis=0, keepdims=True)
    out = np.exp(log)
    return (out / out.sum(axis=0, keepdims=True)).astype(np.float32)


def segmentation_prior(
    segmentation: np.ndarray, num_classes: int, confidence: float = 0.8, seeds: Optional[np.ndarray] = None
) -> np.ndarray:
    """One-hot of a class-index map, softened: ``confidence`` for its class, the rest shared.

    With ``seeds`` (``(H, W, D)`` class index at strokes, ``NO_SEED`` elsewhere), a connected piece
    of a structure that strokes of other classes cross and none of its own touches -- the false
    blob a user strikes out with a background stroke -- gets a uniform prior: there the strokes
    decide, not the segmentation they contradict. (Softened only, a blob keeps ``confidence`` a
    few voxels away from the stroke and survives the refinement.)

    ``(H, W, D)`` class index -> ``(C, H, W, D)`` float32.
    """
    if not 1.0 / num_classes < confidence < 1.0:
        raise ValueError(f"confidence must be in (1/C, 1), got {confidence}")
    seg = np.asarray(segmentation)
    if seg.min() < 0 or seg.max() >= num_classes:
        raise ValueError(f"segmentation holds values outside 0..{num_classes - 1}")
    other = (1.0 - confidence) / (num_classes - 1)
    prior = np.full((num_classes,) + seg.shape, other, dtype=np.float32)
    np.put_along_axis(prior, seg[None].astype(np.int64), confidence, axis=0)
    if seeds is not None:
        prior[:, contradicted(seg, seeds)] = 1.0 / num_classes
    return prior


def contradicted(segmentation: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """``(H, W, D)`` bool: the pieces of every non-background class ``c`` of ``segmentation`` that
    strokes of another class cross and none of its own touches -- never a class's largest piece.

    A piece is a 6-connected component of ``segmentation == c`` closed in plane over gaps up to
    :data:`STROKE_GAP` voxels wide: 3D Slicer exports its segmentation node with the strokes written
    over the segment, so a background stroke across a blob arrives as a gap in it, not inside it.
    A stroke crosses a piece where it lies in that closed piece; an arc drawn beside it does not.
    The largest piece is left alone: a stroke that trims a leak off the structure itself refines
    it, it does not void it."""
    seg, seeds = np.asarray(segmentation), np.asarray(seeds)
    if seeds.shape != seg.shape:
        raise ValueError(f"seeds {seeds.shape} do not match the segmentation {seg.shape}")
    out = np.zeros(seg.shape, bool)
    stroked = seeds != NO_SEED
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = True
    for c in present_values(seg):
        other = stroked & (seeds != c)
        if c == BACKGROUND_CLASS or not other.any():
            continue
        mask = seg == c
        closed = mask | ndimage.binary_closing(mask, in_plane, iterations=(STROKE_GAP + 1) // 2, border_value=0)
        pieces, n = ndimage.label(closed)
        sizes = np.bincount(pieces[mask], minlength=n + 1)
        sizes[0] = 0
        crossed = np.unique(pieces[other & (pieces > 0)])
        own = np.unique(pieces[(seeds == c) & (pieces > 0)])
        for k in np.setdiff1d(crossed, np.r_[own, np.argmax(sizes)]):
            out |= (pieces == k) & mask
    return out


def likelihood_prior(
    image01: np.ndarray,
    seeds: np.ndarray,
    num_classes: int,
    bins: int = 64,
    spacing: Optional[Sequence[float]] = None,
    proximity_mm: Optional[float] = 5.0,
) -> np.ndarray:
    """Stroke intensity histograms (uniform class prior) times a proximity term (see the module doc).

    Args:
        image01: ``(H, W, D)`` intensities in [0, 1] (:func:`normalise_intensity`).
        seeds: ``(H, W, D)`` class index at strokes, ``NO_SEED`` elsewhere.
        num_classes: ``C``; classes without strokes get the Laplace-smoothed uniform likelihood.
        bins: histogram bins.
        spacing: voxel size in mm (needed with ``proximity_mm``).
        proximity_mm: ``lambda``; ``None`` disables the proximity term.
    """
    idx = np.minimum((np.asarray(image01) * bins).astype(np.int64), bins - 1)
    seeded = seeds != NO_SEED
    counts = np.ones((num_classes, bins), dtype=np.float64)  # Laplace smoothing
    np.add.at(counts, (seeds[seeded], idx[seeded]), 1.0)
    likelihood = counts / counts.sum(axis=1, keepdims=True)
    prob = likelihood.astype(np.float32)[:, idx]
    if proximity_mm:
        if spacing is None:
            raise ValueError("the proximity term needs the voxel spacing")
        for c in range(num_classes):
            if c == BACKGROUND_CLASS:
                continue
            strokes = seeds == c
            if not strokes.any():
                prob[c] = 0.0
                continue
            # beyond 8 lambda the factor is < 3e-4: measure distances only within that reach
            box = roi_box([strokes], spacing, PROXIMITY_REACH * proximity_mm)
            near = np.exp(-ndimage.distance_transform_edt(~strokes[box], sampling=spacing) / proximity_mm)
            inside = prob[c][box] * near
            prob[c] = 0.0
            prob[c][box] = inside
    prob /= np.maximum(prob.sum(axis=0, keepdims=True), 1e-12)
    return prob
