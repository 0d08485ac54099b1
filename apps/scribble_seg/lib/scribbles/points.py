"""Sparse surface points (Weak-Net's annotation) in, a template label map out.

Two ways points arrive (voxel coordinates of the image, axes as stored):

* a **label map** where each clicked voxel holds its structure's class id (what 3D Slicer's
  markups-to-labelmap or a few painted voxels give), saved with ``save_label`` under the points
  tag;
* **JSON** in the label's params: ``{"points": {"<label name>": [[x, y, z], ...]}}``.

Each structure needs at least :data:`lib.scribbles.template.MIN_POINTS` points; a point outside
the volume, an unknown name or an unknown id is a ``ValueError`` that names it.

:func:`template_labels` fits one template per structure (:mod:`lib.scribbles.template`) and paints
them largest first, so a structure inside another (the LV blood pool inside the epicardium
outlined by the myocardium's points) stays on top.
"""

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from .convention import BACKGROUND_CLASS, UNANNOTATED, ScribbleConvention
from .template import MIN_POINTS, fit_template, rasterise

Points = Dict[int, np.ndarray]
"""``{class index: (N, 3) voxel coordinates}``."""


def _check_counts(points: Points, convention: ScribbleConvention) -> Points:
    if not points:
        raise ValueError("no surface points given")
    names = {v: k for k, v in convention.labels.items()}
    few = {names[c]: len(p) for c, p in points.items() if len(p) < MIN_POINTS}
    if few:
        raise ValueError(
            f"each structure needs at least {MIN_POINTS} surface points; got "
            + ", ".join(f"{n} for '{k}'" for k, n in few.items())
        )
    return points


def points_from_labelmap(label: np.ndarray, convention: ScribbleConvention) -> Points:
    """Clicked voxels of a label map (class id at each point, 0 elsewhere)."""
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"a points label map must be 3D, got shape {label.shape}")
    values = np.setdiff1d(np.unique(label), [UNANNOTATED])
    unknown = np.setdiff1d(values, list(convention.labels.values()))
    if unknown.size:
        raise ValueError(
            f"points label map holds values {unknown.tolist()} that are not class ids "
            f"{sorted(convention.labels.values())}"
        )
    return _check_counts({int(v): np.argwhere(label == v) for v in values}, convention)


def points_from_json(
    points: Mapping[str, Sequence[Sequence[float]]], convention: ScribbleConvention, shape: Tuple[int, int, int]
) -> Points:
    """``{"<label name>": [[x, y, z], ...]}`` in voxel coordinates (rounded to the nearest voxel)."""
    if not isinstance(points, Mapping):
        raise ValueError('points must be {"<label name>": [[x, y, z], ...]}')
    out: Points = {}
    for name, coords in points.items():
        try:
            c = convention.class_id(name)
        except (KeyError, ValueError):
            raise ValueError(f"unknown label name '{name}' in points; labels: {list(convention.labels)}") from None
        if c == BACKGROUND_CLASS:
            raise ValueError(f"points outline structures, not background ('{name}'); labels: {list(convention.labels)}")
        p = np.asarray(coords, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3 or not np.isfinite(p).all():
            raise ValueError(f"points of '{name}' must be a list of [x, y, z] numbers")
        v = np.rint(p).astype(np.int64)
        outside = ((v < 0) | (v >= np.asarray(shape))).any(axis=1)
        if outside.any():
            raise ValueError(f"points of '{name}' outside the {tuple(shape)} volume: {p[outside][:5].tolist()}")
        out[c] = v
    return _check_counts(out, convention)


def points_of(label: np.ndarray, info: Mapping, convention: ScribbleConvention) -> Points:
    """The points of a saved points label: the JSON ``info["points"]`` when present (the label map
    may then be empty), plus the clicked voxels of the label map."""
    label = np.asarray(label)
    json_points = (info or {}).get("points")
    if not json_points:
        return points_from_labelmap(label, convention)
    out = points_from_json(json_points, convention, label.shape)
    if (label != UNANNOTATED).any():
        for c, p in points_from_labelmap(label, convention).items():
            out[c] = np.concatenate([out[c], p]) if c in out else p
    return out


def template_labels(points: Points, shape: Tuple[int, int, int], spacing: Sequence[float], **fit) -> np.ndarray:
    """Class-index map ``shape`` of the fitted templates (background elsewhere), largest first."""
    spacing = np.asarray(spacing, dtype=np.float64)
    masks = {c: rasterise(fit_template(p * spacing, **fit), shape, spacing) for c, p in points.items()}
    out = np.full(shape, BACKGROUND_CLASS, dtype=np.int64)
    for c in sorted(masks, key=lambda k: -int(masks[k].sum())):
        out[masks[c]] = c
    return out
