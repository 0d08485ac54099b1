"""Scribble simulation from dense masks, slice by slice, in physical units.

Simulates what an annotator draws on a short-axis stack (after WSL4MIS' skeleton scribbles and
ScribbleBench's interior + contour strokes, Gotkowski et al. 2024), per scribbled slice:

* **interior stroke**, per class and connected component: the medial geodesic path between the
  two ends of the component's (randomly eroded) region -- the double-sweep approximation of its
  geodesic diameter, with a cost ``1 / (1 + d)`` (``d`` the distance to the region's edge in mm)
  that keeps the path central -- cut to a random sub-arc and thickened to ``stroke_width_mm``.
  For a disk this is a chord through the centre, for a ring (myocardium) half the ring, for a
  crescent (RV) its spine.
* optional **contour stroke**: a random arc of the iso-contour ``d = contour_inset_mm`` inside
  the component.
* optional **background strokes**: random arcs of iso-contours of the distance to the union of
  all classes -- loops around the structures: the first at ``background_distance_mm``, the next
  ones farther out at ``far_background_distance_mm``, across the other tissues (a background
  stroke only near the structures leaves lungs, fat and liver unannotated, and partial CE then
  labels them as heart).

A stroke's centre line is one voxel wide and is thickened by ``(stroke_width_mm - s) / 2`` mm on
each side (``s`` the finer in-plane spacing), so it is ``stroke_width_mm`` wide in whole voxels.

Every stroke is intersected with its own class region after thickening, so a scribble never
leaves its class, and every class present in a scribbled slice gets a stroke (a component too
small for a path gets its deepest voxel). Randomness comes from one ``numpy`` generator seeded
by ``seed``: same seed, same strokes.

Arrays are ``(H, W, D)`` with slices along ``slice_axis`` (default the last axis, the through-plane
axis of the app's volumes); ``spacing`` is in mm per axis.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.graph import MCP_Geometric
from skimage.measure import find_contours

from .convention import BACKGROUND_CLASS, ScribbleConvention


@dataclass(frozen=True)
class ScribbleSimulation:
    """Knobs of :func:`simulate_scribbles` (defaults land on ~5-10 % of structure voxels on the
    sample phantoms at 1.5 mm in-plane; see ``tests/test_simulate.py``).

    Attributes:
        stroke_width_mm: thickness of every stroke.
        slice_fraction: fraction of the slices that contain a class which get scribbles (>= 1 slice);
            every class present in a scribbled slice gets strokes there. Ignored with ``slices``.
        slices: the few-slice protocol of a Slicer user: each class gets strokes on this many
            slices of its own, spread over its extent (one per equal part of the slices showing it,
            jittered within the middle half of the part); ``None`` for ``slice_fraction``.
        arc_fraction: (min, max) fraction of an interior path kept, drawn uniformly per stroke.
        max_erosion_mm: the region is eroded by U(0, max) mm before the path is traced.
        min_component_mm2: components smaller than this get no stroke of their own, except the
            largest one of each class in a slice.
        contour_strokes: add a contour stroke per component.
        contour_inset_mm: (min, max) depth of the contour stroke inside its component.
        contour_fraction: (min, max) fraction of the contour kept.
        background_strokes: number of background loops per scribbled slice (0 for none).
        background_width_mm: thickness of background strokes (annotators use a bigger brush there).
        background_distance_mm: (min, max) distance of the first background loop from the structures.
        far_background_distance_mm: (min, max) distance of the other background loops.
        background_fraction: (min, max) fraction of a background loop kept.
    """

    stroke_width_mm: float = 3.0
    slice_fraction: float = 1.0
    slices: Optional[int] = None
    arc_fraction: Tuple[float, float] = (0.6, 0.9)
    max_erosion_mm: float = 3.0
    min_component_mm2: float = 20.0
    contour_strokes: bool = False
    contour_inset_mm: Tuple[float, float] = (1.5, 4.5)
    contour_fraction: Tuple[float, float] = (0.1, 0.2)
    background_strokes: int = 2
    background_width_mm: float = 6.0
    background_distance_mm: Tuple[float, float] = (5.0, 15.0)
    far_background_distance_mm: Tuple[float, float] = (20.0, 50.0)
    background_fraction: Tuple[float, float] = (0.5, 0.9)

    def __post_init__(self):
        if self.stroke_width_mm <= 0 or self.background_width_mm <= 0:
            raise ValueError(f"stroke widths must be > 0, got {self.stroke_width_mm}, {self.background_width_mm}")
        if not 0 < self.slice_fraction <= 1:
            raise ValueError(f"slice_fraction must be in (0, 1], got {self.slice_fraction}")
        if self.slices is not None and (int(self.slices) != self.slices or self.slices < 1):
            raise ValueError(f"slices must be a positive integer or None, got {self.slices}")
        for name in ("arc_fraction", "contour_fraction", "background_fraction"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got {(lo, hi)}")


def _footprint(radius_mm: float, spacing2d: Sequence[float]) -> np.ndarray:
    """Elliptical structuring element of ``radius_mm`` at the in-plane spacing."""
    r = [max(0, int(round(radius_mm / s))) for s in spacing2d]
    yy, xx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1]
    return ((yy * spacing2d[0]) ** 2 + (xx * spacing2d[1]) ** 2) <= radius_mm**2 + 1e-6


def _thickening(width_mm: float, spacing2d: Sequence[float]) -> np.ndarray:
    """Footprint that turns a one-voxel centre line into a ``width_mm`` wide stroke."""
    return _footprint(max(0.0, width_mm - min(spacing2d)) / 2.0, spacing2d)


def _geodesic(region: np.ndarray, costs: np.ndarray, spacing2d, start) -> Tuple[np.ndarray, MCP_Geometric]:
    mcp = MCP_Geometric(costs, sampling=tuple(spacing2d), fully_connected=True)
    cumulative, _ = mcp.find_costs([tuple(start)])
    cumulative = np.where(region & np.isfinite(cumulative), cumulative, -np.inf)
    return cumulative, mcp


def _medial_path(region: np.ndarray, spacing2d, rng: np.random.Generator) -> np.ndarray:
    """Ordered ``(N, 2)`` pixel path along the medial geodesic diameter of ``region``."""
    depth = ndimage.distance_transform_edt(region, sampling=spacing2d)
    costs = np.where(region, 1.0 / (1.0 + depth), np.inf)
    pts = np.argwhere(region)
    seed = pts[rng.integers(len(pts))]
    cum, _ = _geodesic(region, costs, spacing2d, seed)
    a = np.unravel_index(np.argmax(cum), region.shape)
    cum, mcp = _geodesic(region, costs, spacing2d, a)
    b = np.unravel_index(np.argmax(cum), region.shape)
    return np.asarray(mcp.traceback(b))


def _sub_arc(path: np.ndarray, fraction: Tuple[float, float], rng: np.random.Generator, closed=False) -> np.ndarray:
    """A random contiguous piece of ``path`` keeping U(fraction) of its points."""
    n = len(path)
    keep = max(1, int(round(n * rng.uniform(*fraction))))
    if keep >= n:
        return path
    start = int(rng.integers(n if closed else n - keep + 1))
    idx = (start + np.arange(keep)) % n
    return path[idx]


def _rasterise(points: np.ndarray, shape) -> np.ndarray:
    """Connect consecutive (sub)pixel points with lines into a boolean image."""
    out = np.zeros(shape, dtype=bool)
    p = np.clip(np.round(points).astype(int), 0, np.array(shape) - 1)
    out[p[0, 0], p[0, 1]] = True
    for (r0, c0), (r1, c1) in zip(p[:-1], p[1:]):
        rr, cc = draw_line(r0, c0, r1, c1)
        out[rr, cc] = True
    return out


def _longest_contour(field: np.ndarray, level: float) -> Optional[np.ndarray]:
    contours = find_contours(field, level)
    return max(contours, key=len) if contours else None


def _component_strokes(
    comp: np.ndarray, spacing2d, cfg: ScribbleSimulation, thicken: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Interior (and optional contour) stroke of one connected component, inside it."""
    erosion = rng.uniform(0.0, cfg.max_erosion_mm)
    core = ndimage.binary_erosion(comp, _footprint(erosion, spacing2d)) if erosion > 0 else comp
    if not core.any():
        core = comp
    path = _sub_arc(_medial_path(core, spacing2d, rng), cfg.arc_fraction, rng)
    stroke = _rasterise(path, comp.shape)
    if cfg.contour_strokes:
        depth = ndimage.distance_transform_edt(comp, sampling=spacing2d)
        contour = _longest_contour(depth, rng.uniform(*cfg.contour_inset_mm))
        if contour is not None:
            stroke |= _rasterise(_sub_arc(contour, cfg.contour_fraction, rng, closed=True), comp.shape)
    stroke = ndimage.binary_dilation(stroke, thicken) & comp
    if not stroke.any():  # a sliver: its deepest pixel
        depth = ndimage.distance_transform_edt(comp, sampling=spacing2d)
        stroke[np.unravel_index(np.argmax(depth), comp.shape)] = True
    return stroke


def simulate_scribbles(
    mask: np.ndarray,
    spacing: Sequence[float],
    convention: ScribbleConvention,
    seed: int = 0,
    config: ScribbleSimulation = ScribbleSimulation(),
    slice_axis: int = -1,
) -> np.ndarray:
    """Simulate an annotator's scribbles on a dense mask.

    Args:
        mask: dense class-index mask ``(H, W, D)``: 0 = background, ``k`` = class ``k`` of ``convention``.
        spacing: voxel size in mm per axis of ``mask``.
        convention: the scribble convention of the output.
        seed: seed of the random generator (same seed => same strokes).
        config: stroke knobs, see :class:`ScribbleSimulation`.
        slice_axis: axis along which slices are drawn (the through-plane axis).

    Returns:
        scribble map ``(H, W, D)`` (``int64``) in ``convention``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D (H, W, D), got shape {mask.shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing}")
    bad = np.setdiff1d(np.unique(mask), np.arange(convention.num_classes))
    if bad.size:
        raise ValueError(f"mask holds values {bad.tolist()} that are not class indices of {convention.class_names}")
    rng = np.random.default_rng(seed)
    axis = slice_axis % 3
    moved = np.moveaxis(mask, axis, -1)
    spacing2d = [s for i, s in enumerate(spacing) if i != axis]
    out = np.zeros(moved.shape, dtype=np.int64)

    chosen = _scribbled_slices(moved, config, rng)
    thicken = _thickening(config.stroke_width_mm, spacing2d)
    thicken_bg = _thickening(config.background_width_mm, spacing2d)
    min_px = config.min_component_mm2 / float(np.prod(spacing2d))

    for z, classes in chosen.items():
        sl = moved[..., z]
        for cls in classes:
            comps, n = ndimage.label(sl == cls, structure=np.ones((3, 3)))
            sizes = ndimage.sum_labels(np.ones_like(comps), comps, index=np.arange(1, n + 1))
            for rank, i in enumerate(np.argsort(-sizes)):
                if rank > 0 and sizes[i] < min_px:
                    continue
                out[..., z][_component_strokes(comps == i + 1, spacing2d, config, thicken, rng)] = cls
        for i in range(config.background_strokes):
            distance = config.far_background_distance_mm if i else config.background_distance_mm
            stroke = _background_stroke(sl, spacing2d, distance, config.background_fraction, thicken_bg, rng)
            out[..., z][stroke] = convention.background_scribble_id
    return np.moveaxis(out, -1, axis)


def _scribbled_slices(moved: np.ndarray, config: ScribbleSimulation, rng: np.random.Generator) -> Dict[int, list]:
    """``{slice index: classes to stroke there}`` for a mask with slices along the last axis."""
    present = {int(c): np.flatnonzero((moved == c).any(axis=(0, 1))) for c in np.unique(moved) if c != BACKGROUND_CLASS}
    chosen: Dict[int, list] = {}
    if config.slices is None:
        with_structures = np.flatnonzero((moved != BACKGROUND_CLASS).any(axis=(0, 1)))
        if with_structures.size:
            n = max(1, int(round(config.slice_fraction * with_structures.size)))
            for z in np.sort(rng.choice(with_structures, size=n, replace=False)):
                chosen[int(z)] = [c for c, zs in present.items() if z in zs]
        return chosen
    for c, zs in present.items():
        n = min(int(config.slices), zs.size)
        picks = ((np.arange(n) + rng.uniform(0.25, 0.75, size=n)) * zs.size / n).astype(int)
        for z in zs[np.minimum(picks, zs.size - 1)]:
            chosen.setdefault(int(z), []).append(c)
    return dict(sorted(chosen.items()))


def slicer_protocol(slices: Optional[int]) -> ScribbleSimulation:
    """How a radiologist scribbles in Slicer: an interior stroke of each structure on ``slices``
    axial slices spread over it (``None``: every slice that shows a structure), and two background
    arcs 3-8 mm outside the structures on the same slices."""
    return ScribbleSimulation(
        slices=slices, background_strokes=2, background_distance_mm=(3.0, 8.0), far_background_distance_mm=(3.0, 8.0)
    )


def _background_stroke(sl, spacing2d, distance_mm: Tuple[float, float], fraction, thicken, rng) -> np.ndarray:
    """A random arc of a loop at a random distance (mm) outside all structures of slice ``sl``."""
    background = sl == BACKGROUND_CLASS
    distance = ndimage.distance_transform_edt(background, sampling=spacing2d)
    level = min(rng.uniform(*distance_mm), 0.5 * float(distance.max()))  # small fields of view
    loop = _longest_contour(distance, level)
    if loop is None:
        return np.zeros(sl.shape, dtype=bool)
    stroke = _rasterise(_sub_arc(loop, fraction, rng, closed=True), sl.shape)
    return ndimage.binary_dilation(stroke, thicken) & background


def scribble_coverage(scribbles: np.ndarray, mask: np.ndarray, convention: ScribbleConvention) -> Dict[str, float]:
    """Fraction of each class's voxels that carry a stroke of that class.

    Returns ``{class name: fraction}`` for the foreground classes, ``"structures"`` (all
    foreground voxels together), ``"background"`` and ``"annotated"`` (all voxels of the volume).
    """
    class_index, annotated = convention.targets(np.asarray(scribbles))
    out: Dict[str, float] = {}
    hit = annotated & (class_index == mask)
    for name, k in convention.labels.items():
        n = int((mask == k).sum())
        out[name] = float((hit & (mask == k)).sum() / n) if n else 0.0
    fg = mask != BACKGROUND_CLASS
    out["structures"] = float((hit & fg).sum() / max(1, fg.sum()))
    out["background"] = float((hit & ~fg).sum() / max(1, (~fg).sum()))
    out["annotated"] = float(annotated.mean())
    return out
