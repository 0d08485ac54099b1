"""Clicks as scribbles: OHIF's point prompts turned into small spherical strokes.

OHIF's Point Prompts panel (``ProbeMONAILabel`` tool, models of type ``deepedit``) sends, per label
name, the clicked voxels as ``[i, j, k]`` indices from cornerstone's ``worldToIndex`` on the displayed
volume -- column, row, slice, the index order of the image the server loads (``(H, W, D)`` = ITK's
``(x, y, z)``) -- plus the background clicks under ``background``::

    {"lv": [[80, 72, 8], [81, 70, 9]], "rv": [[60, 90, 8]], "background": [[20, 20, 8]], ...}

Each click becomes a ball of radius ``r`` mm (anisotropic voxels: an ellipsoid of ``r / spacing``
voxels per axis) painted into the scribble map with its class's value, over whatever was there:
a click corrects earlier strokes.
"""

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .convention import ScribbleConvention

Click = Tuple[int, int, int]


def _is_point_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 3 for p in value)


def parse_clicks(
    request: Mapping[str, Any], convention: ScribbleConvention, shape: Sequence[int]
) -> Dict[int, List[Click]]:
    """``{scribble-map value: [click, ...]}`` from an OHIF ``deepedit`` request.

    Keys naming a label (case-insensitive) or a background segment name carry clicks; other keys
    holding a list of points are refused, other keys (OHIF's own settings) are ignored.

    Raises:
        ValueError: a point list under a name that is no label, a point that is not three integers, or
            a point outside ``shape``.
    """
    clicks: Dict[int, List[Click]] = {}
    for key, value in request.items():
        if not _is_point_list(value) or not value:
            continue
        try:
            value_id = convention.scribble_value(str(key))
        except ValueError:
            raise ValueError(
                f"clicks under {key!r}, which is no label of this app; labels are {list(convention.labels)}"
            ) from None
        for point in value:
            try:
                ijk = tuple(int(c) for c in point)
            except (TypeError, ValueError):
                raise ValueError(f"click {point!r} for {key!r} is not three integer voxel indices") from None
            if any(c != float(p) for c, p in zip(ijk, point)):
                raise ValueError(f"click {point!r} for {key!r} is not three integer voxel indices")
            if not all(0 <= c < n for c, n in zip(ijk, shape)):
                raise ValueError(f"click {list(ijk)} for {key!r} is outside the image (shape {tuple(shape)})")
            clicks.setdefault(value_id, []).append(ijk)
    return clicks


def paint_clicks(
    scribbles: np.ndarray, clicks: Mapping[int, Sequence[Click]], spacing: Sequence[float], radius_mm: float
) -> np.ndarray:
    """``scribbles`` (``(H, W, D)``) with a ball of ``radius_mm`` around every click painted with its value.

    The ball holds the voxels ``v`` with ``sum(((v - c) * spacing / r) ** 2) <= 1`` -- at least the
    clicked voxel itself. Later values overwrite earlier ones where balls overlap (dict order).
    """
    out = np.array(scribbles, copy=True)
    spacing = np.asarray(spacing, dtype=np.float64)
    reach = np.floor(radius_mm / spacing).astype(int)
    offsets = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in reach], indexing="ij"), -1).reshape(-1, 3)
    ball = offsets[(((offsets * spacing) / max(radius_mm, 1e-9)) ** 2).sum(1) <= 1.0]
    shape = np.asarray(out.shape)
    for value, points in clicks.items():
        for c in points:
            voxels = ball + np.asarray(c)
            voxels = voxels[np.all((voxels >= 0) & (voxels < shape), axis=1)]
            out[tuple(voxels.T)] = value
    return out
