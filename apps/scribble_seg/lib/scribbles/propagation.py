"""Scribble2D5's label propagation module (Chen et al., MICCAI 2022, §2.1): supervoxel pseudo
labels and a static pseudo boundary.

**Pseudo mask.** SLIC supervoxels (Achanta et al., PAMI 2012: k-means on intensity + position,
positions in mm through ``spacing`` so thick slices are handled) over the volume; a supervoxel
crossed by the strokes of exactly one class (background strokes included) becomes that class,
one crossed by several classes is left out (``M_voxel = 0`` in the paper), one crossed by none
stays unannotated. The strokes themselves always keep their class. Optionally a class is
propagated through supervoxels of its own size (:func:`propagate_multiscale`; not in the paper).
The result is returned as a **scribble map of the same convention** -- a denser one -- so the
partial cross-entropy restricted to ``M_voxel`` is just :class:`lib.losses.PartialCrossEntropyLoss` on it.

**Static boundary.** Per-slice edge maps of the intensity-normalised image, stacked into a 3D
pseudo boundary in [0, 1] (the paper uses HED, whose weights cannot be downloaded here; its own
code also computes Canny). :func:`static_boundary` is the one function a learned detector would
replace.

Both are pure functions of (image, scribbles, parameters); :class:`lib.transforms.PropagateScribblesd`
caches them on disk keyed by that content.
"""

from dataclasses import dataclass, replace
from typing import Dict, Sequence, Tuple

import numpy as np
from skimage.feature import canny
from skimage.filters import sobel
from skimage.segmentation import slic

from .convention import BACKGROUND_CLASS, UNANNOTATED, ScribbleConvention
from .prior import normalise_intensity


@dataclass(frozen=True)
class PropagationParams:
    """Supervoxel propagation settings. Default 12 mm supervoxels: smaller ones give more precise
    pseudo labels on thin structures (a 12 mm supervoxel straddles a 7-11 mm wall and spills into
    the similar-intensity tissue around it) at about half the coverage, and a network trained on
    less coverage loses more on the large structures than it gains on the thin ones. Thin
    structures get their own, smaller size instead (``class_supervoxel_mm``).

    Attributes:
        supervoxel_mm: target supervoxel edge length (the number of SLIC segments follows from the
            volume's physical size).
        class_supervoxel_mm: ``((class name, mm), ...)`` per-class sizes overriding ``supervoxel_mm``
            (``background`` for the background strokes); see :func:`propagate_multiscale`.
        compactness: SLIC compactness (higher = more regular, less intensity-driven).
        edge_detector: ``canny`` or ``sobel`` (per slice).
        edge_sigma_mm: Gaussian smoothing of the edge detector, in-plane mm.
        outer_slices_background: the slices before the first and after the last slice holding a
            stroke become background in the pseudo mask (:func:`background_beyond_strokes`). Right
            only when the annotator scribbled every slice in which a structure shows (ACDC's
            protocol); not in the paper, off by default.
    """

    supervoxel_mm: float = 12.0
    class_supervoxel_mm: Tuple[Tuple[str, float], ...] = ()
    compactness: float = 0.05
    edge_detector: str = "canny"
    edge_sigma_mm: float = 2.0
    outer_slices_background: bool = False

    def __post_init__(self):
        if self.supervoxel_mm <= 0 or self.compactness <= 0 or self.edge_sigma_mm <= 0:
            raise ValueError("supervoxel_mm, compactness and edge_sigma_mm must be > 0")
        if self.edge_detector not in ("canny", "sobel"):
            raise ValueError(f"edge_detector must be 'canny' or 'sobel', got {self.edge_detector!r}")
        sizes = dict(self.class_supervoxel_mm)
        bad = {name: mm for name, mm in sizes.items() if not float(mm) > 0}
        if bad or len(sizes) != len(self.class_supervoxel_mm):
            raise ValueError(f"class_supervoxel_mm needs one size > 0 per class name, got {self.class_supervoxel_mm}")
        object.__setattr__(self, "class_supervoxel_mm", tuple(sorted((str(n), float(mm)) for n, mm in sizes.items())))

    def sizes(self, convention: ScribbleConvention) -> Dict[int, float]:
        """``{scribble value: supervoxel mm}`` of every class and the background strokes
        (``supervoxel_mm`` unless ``class_supervoxel_mm`` names the class; ``background`` for the
        background strokes). Unknown names raise ``ValueError``."""
        out = {v: self.supervoxel_mm for v in convention.values[1:]}
        for name, mm in self.class_supervoxel_mm:
            index = convention.class_id(name)
            out[convention.background_scribble_id if index == BACKGROUND_CLASS else index] = mm
        return out


def supervoxels(
    image: np.ndarray, spacing: Sequence[float], params: PropagationParams = PropagationParams()
) -> np.ndarray:
    """SLIC supervoxel ids ``(H, W, D)`` (from 1), about ``supervoxel_mm`` across."""
    img01 = normalise_intensity(image)
    volume_mm3 = float(np.prod(np.asarray(img01.shape) * np.asarray(spacing, dtype=float)))
    n_segments = max(2, int(round(volume_mm3 / params.supervoxel_mm**3)))
    return slic(
        img01,
        n_segments=n_segments,
        compactness=params.compactness,
        channel_axis=None,
        spacing=np.asarray(spacing, dtype=float),
        start_label=1,
    )


def propagate_labels(scribbles: np.ndarray, segments: np.ndarray, convention: ScribbleConvention) -> np.ndarray:
    """Pseudo scribble map: supervoxels touched by exactly one class's strokes take that class.

    Args:
        scribbles: ``(H, W, D)`` scribble map of ``convention``.
        segments: ``(H, W, D)`` supervoxel ids (>= 0).

    Returns:
        ``(H, W, D)`` int64 scribble map of ``convention`` (unannotated where no or several classes).
    """
    scribbles, segments = np.asarray(scribbles), np.asarray(segments)
    if scribbles.shape != segments.shape:
        raise ValueError(f"scribbles {scribbles.shape} and supervoxels {segments.shape} differ in shape")
    values = np.sort(np.asarray(convention.values[1:]))  # the annotated values: classes + background stroke
    annotated = convention.annotated(scribbles)
    n_seg = int(segments.max()) + 1
    hits = np.zeros((n_seg, len(values)), dtype=np.int64)  # strokes of each value in each supervoxel
    np.add.at(hits, (segments[annotated], np.searchsorted(values, scribbles[annotated])), 1)
    touched = hits > 0
    unique = touched.sum(axis=1) == 1
    lut = np.full(n_seg, UNANNOTATED, dtype=np.int64)
    lut[unique] = values[touched[unique].argmax(axis=1)]
    pseudo = lut[segments]
    pseudo[annotated] = scribbles[annotated]  # the strokes keep their class
    return pseudo


def propagate_multiscale(
    image: np.ndarray,
    scribbles: np.ndarray,
    spacing: Sequence[float],
    convention: ScribbleConvention,
    params: PropagationParams = PropagationParams(),
) -> np.ndarray:
    """Pseudo scribble map with a supervoxel size per class (:meth:`PropagationParams.sizes`).

    Class ``k`` takes the voxels that :func:`propagate_labels` gives it on supervoxels of its own
    size ``s_k``; a voxel claimed by two classes (possible only when their sizes differ) is left
    unannotated, and the strokes keep their class. With one size for all it is exactly
    :func:`propagate_labels` on :func:`supervoxels`. A thin structure (the 7-11 mm myocardial
    ring) can so be propagated through small, precise supervoxels while the background and the
    large cavities keep the coverage of large ones.
    """
    scribbles = np.asarray(scribbles)
    sizes = params.sizes(convention)
    out = np.full(scribbles.shape, UNANNOTATED, dtype=np.int64)
    claims = np.zeros(scribbles.shape, dtype=np.int8)
    for mm in sorted(set(sizes.values())):
        pseudo = propagate_labels(scribbles, supervoxels(image, spacing, replace(params, supervoxel_mm=mm)), convention)
        for value in (v for v, s in sizes.items() if s == mm):
            mine = pseudo == value
            out[mine] = value
            claims += mine
    out[claims > 1] = UNANNOTATED  # never a stroke: every map keeps the strokes, so only its own class claims one
    return out


def background_beyond_strokes(
    pseudo: np.ndarray, scribbles: np.ndarray, convention: ScribbleConvention, slice_axis: int = -1
) -> np.ndarray:
    """Pseudo scribble map whose slices outside the stroked range are background strokes.

    With strokes in slices ``z0..z1`` along ``slice_axis`` (any stroke, background included),
    every voxel of slices ``< z0`` and ``> z1`` takes ``convention.background_scribble_id``; the
    slices in between are returned as they are. The annotator's silence about the slices beyond
    the heart's base and apex becomes "no structure here", which holds when every slice showing a
    structure was scribbled (ACDC's scribbles, the simulator's ``slice_fraction = 1``). Without
    it those slices carry no label at all and a network is free to paint the partial-volume heart
    there. No stroke at all: returned unchanged.

    Args:
        pseudo: ``(H, W, D)`` pseudo scribble map of ``convention``.
        scribbles: ``(H, W, D)`` the annotator's scribble map it was propagated from.
    """
    pseudo, scribbles = np.asarray(pseudo), np.asarray(scribbles)
    if pseudo.shape != scribbles.shape:
        raise ValueError(f"pseudo {pseudo.shape} and scribbles {scribbles.shape} differ in shape")
    out = np.array(pseudo, dtype=np.int64, copy=True)
    moved = np.moveaxis(out, slice_axis, -1)  # a view: writes land in ``out``
    strokes = np.moveaxis(convention.annotated(scribbles), slice_axis, -1)
    stroked = np.flatnonzero(strokes.any(axis=tuple(range(strokes.ndim - 1))))
    if stroked.size == 0:
        return out
    moved[..., : stroked[0]] = convention.background_scribble_id
    moved[..., stroked[-1] + 1 :] = convention.background_scribble_id
    return out


def static_boundary(
    image: np.ndarray, spacing: Sequence[float], params: PropagationParams = PropagationParams(), slice_axis: int = -1
) -> np.ndarray:
    """Per-slice edge map stacked into ``(H, W, D)`` float32 in [0, 1] (Canny: binary; Sobel: magnitude)."""
    img01 = np.moveaxis(normalise_intensity(image), slice_axis, -1)
    axis = slice_axis % 3
    inplane = [s for i, s in enumerate(spacing) if i != axis]
    sigma_px = params.edge_sigma_mm / float(np.mean(inplane))
    out = np.zeros(img01.shape, dtype=np.float32)
    for z in range(img01.shape[-1]):
        if params.edge_detector == "canny":
            out[..., z] = canny(img01[..., z], sigma=sigma_px)
        else:
            from scipy import ndimage

            mag = sobel(ndimage.gaussian_filter(img01[..., z], sigma_px))
            out[..., z] = mag / max(float(mag.max()), 1e-6)
    return np.moveaxis(out, -1, slice_axis)


def propagate(
    image: np.ndarray,
    scribbles: np.ndarray,
    spacing: Sequence[float],
    convention: ScribbleConvention,
    params: PropagationParams = PropagationParams(),
) -> Tuple[np.ndarray, np.ndarray]:
    """``(pseudo scribble map, static boundary)`` of one volume (slices along the last axis)."""
    pseudo = propagate_multiscale(image, scribbles, spacing, convention, params)
    if params.outer_slices_background:
        pseudo = background_beyond_strokes(pseudo, scribbles, convention)
    return pseudo, static_boundary(image, spacing, params)
