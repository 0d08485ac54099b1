"""Scribble refinement of a prior: crop to what the user touched, solve, paste back.

``refine`` is the one entry point of the ``crf`` and ``random_walk`` infer tasks:

1. the box = bounding box of the foreground strokes (all strokes if there are only background
   ones) and of ``region`` (a model prior's foreground: the strokes refine the model's whole
   structure; none when correcting the current segmentation, which stays as it is away from the
   strokes) grown by ``margin_mm``, within the Slicer ROI when one is given; background strokes
   outside it only matter through the prior;
2. the chosen solver runs on the box (for the random walk, the box's inner faces are fixed to
   the prior; the dense CRF refines a random walk's answer);
3. outside the box the prior is returned unchanged.

Returns probabilities ``(C, H, W, D)``, or with ``labels=True`` their class map (what the server
answers; on the pyramid it never builds full-size probabilities).
"""

from dataclasses import replace
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .convention import BACKGROUND_CLASS, NO_SEED, present_values, require_strokes
from .crf import DenseCRFParams, dense_crf
from .crop import roi_box
from .multiscale import band_children, block_mean, boundary, coarse_index, coarse_seeds, expand, pyramid
from .prior import intensity_window, sharpened
from .random_walk import RandomWalkParams, absorption, random_walk, walk_free

METHODS = ("crf", "random_walk")
MAX_SOLVE_VOXELS = 250_000
"""Boxes larger than this are solved coarse-to-fine (:mod:`lib.scribbles.multiscale`): the
direct solve's cost grows faster than the box, the pyramid's close to linearly, at about the
same Dice."""
WALK_SHARPNESS = 16.0
"""The dense CRF refines the random walk's answer, taken to this power as its unary
(:func:`lib.scribbles.prior.sharpened`). Far from the strokes a walk leans toward a class by a few
percent only, and the CRF's pairwise terms would outvote what it decided; sharpened, the walk's
decision stands where the image gives the CRF no reason to change it. Tuned on the real
development set (:mod:`lib.datasets.development`)."""
STROKE_WALK_REACH_MM = 200.0
"""How far walkers from the strokes travel before they are absorbed (:func:`from_strokes`,
:func:`lib.scribbles.random_walk.absorption`): the shorter, the less of the slices nobody
scribbled is claimed, but on a coarse grid of the pyramid a short walk leaves a large organ's far
slices undecided and the coarse guess there stands; the longer, the more one class's walkers
cross into another's structure when every slice is scribbled. Tuned on the real development set
and on multi-class phantoms."""
DEFAULT_MARGIN_MM = {"crf": 20.0, "random_walk": 25.0}
"""Margin of the solved box: the smallest at which each method keeps its Dice. The random walk,
which has no spatial prior, needs more room around the strokes than the CRF."""


def refine(
    method: str,
    image: np.ndarray,
    seeds: np.ndarray,
    spacing: Sequence[float],
    prior: np.ndarray,
    params: Union[DenseCRFParams, RandomWalkParams],
    region: Optional[np.ndarray] = None,
    margin_mm: Optional[float] = None,
    roi: Optional[Sequence[int]] = None,
    max_voxels: int = MAX_SOLVE_VOXELS,
    labels: bool = False,
    crf_on_walk: bool = True,
) -> np.ndarray:
    """Refine ``prior`` (``(C, H, W, D)``) from ``seeds`` with ``method`` (``crf`` or ``random_walk``);
    ``margin_mm`` defaults to :data:`DEFAULT_MARGIN_MM` of the method. Returns the probabilities,
    or with ``labels`` their ``(H, W, D)`` uint8 class map (:func:`class_map`).

    The ``crf`` runs on the random walk's answer (:data:`WALK_SHARPNESS`) unless ``crf_on_walk`` is
    off (the prior already is a walk): on a softened segmentation alone the CRF's smoothing undoes
    corrections the strokes ask for (a missed slab stays missed)."""
    if method not in METHODS:
        raise ValueError(f"unknown refinement method {method!r}; choose one of {METHODS}")
    margin_mm = DEFAULT_MARGIN_MM[method] if margin_mm is None else float(margin_mm)
    image, seeds, prior = np.asarray(image), np.asarray(seeds), np.asarray(prior, dtype=np.float32)
    if image.ndim != 3 or seeds.shape != image.shape or prior.shape[1:] != image.shape:
        raise ValueError(f"image {image.shape}, seeds {seeds.shape} and prior {prior.shape} do not match")
    require_strokes(seeds)
    stroked = seeds != NO_SEED
    foreground = stroked & (seeds != BACKGROUND_CLASS)
    masks = [foreground if foreground.any() else stroked] + ([np.asarray(region, bool)] if region is not None else [])
    box = roi_box(masks, spacing, margin_mm, roi)
    band = params if isinstance(params, RandomWalkParams) else RandomWalkParams()
    solved = _solve_box(
        _solver(method, params, crf_on_walk), image, seeds, spacing, prior, box, max_voxels, band, labels
    )
    out = class_map(prior) if labels else prior.copy()
    out[(Ellipsis,) + box] = solved
    return out


def from_strokes(
    method: str,
    image: np.ndarray,
    seeds: np.ndarray,
    spacing: Sequence[float],
    num_classes: int,
    params: Union[DenseCRFParams, RandomWalkParams],
    margin_mm: Optional[float] = None,
    roi: Optional[Sequence[int]] = None,
    max_voxels: int = MAX_SOLVE_VOXELS,
    reach_mm: float = STROKE_WALK_REACH_MM,
    labels: bool = False,
) -> np.ndarray:
    """Segment from strokes alone (no model, no current segment): ``(C, H, W, D)`` probabilities,
    or with ``labels`` their ``(H, W, D)`` uint8 class map.

    1. the random walk from the strokes over the whole volume (within ``roi``), with a weak data
       term toward the uniform distribution over the stroked classes: Grady's prior model with a
       flat prior, i.e. walkers absorbed after ~``reach_mm`` (:func:`absorption`), so a voxel
       far from every stroke stays undecided (ties go to background) instead of being claimed by
       whichever stroke a slow diffusion reaches first;
    2. for ``crf``, the dense CRF on that (sharpened, :data:`WALK_SHARPNESS`) in the box
       around its foreground.

    Above ``max_voxels`` both steps run on the coarsest grid of the pyramid and the boundary is
    walked back down to full resolution. Classes without strokes get probability 0.
    """
    image, seeds = np.asarray(image), np.asarray(seeds)
    if image.ndim != 3 or seeds.shape != image.shape:
        raise ValueError(f"image {image.shape} and seeds {seeds.shape} do not match")
    require_strokes(seeds)
    stroked = present_values(seeds[seeds != NO_SEED])
    rw = params if isinstance(params, RandomWalkParams) else RandomWalkParams()

    def walk_params(sp, block_mean_grid=False):
        return _on_grid(replace(rw, gamma=absorption(sp, reach_mm)), block_mean_grid)

    def flat(shape):
        uniform = np.zeros((num_classes,) + tuple(shape), dtype=np.float32)
        uniform[stroked] = 1.0 / stroked.size
        return uniform

    def solve(img, sd, sp, _prior, faces, block_mean_grid=False):
        walk = _solve("random_walk", img, sd, sp, flat(img.shape), walk_params(sp, block_mean_grid), faces)
        if method == "random_walk":
            return walk
        return refine(
            method,
            img,
            sd,
            sp,
            sharpened(walk, WALK_SHARPNESS),
            params,
            region=class_map(walk) != BACKGROUND_CLASS,
            margin_mm=margin_mm,
            max_voxels=np.iinfo(np.int64).max,
            crf_on_walk=False,
        )

    whole = roi_box([seeds != NO_SEED], spacing, np.inf, roi)  # the whole volume, within the ROI
    solved = _solve_box(solve, image, seeds, spacing, None, whole, max_voxels, walk_params(spacing), labels)
    if solved.shape[-3:] == image.shape:
        return solved
    # outside the ROI: the flat prior, whose class map is its first stroked class
    out = np.full(image.shape, stroked[0], dtype=np.uint8) if labels else flat(image.shape)
    out[(Ellipsis,) + whole] = solved
    return out


def class_map(probs: np.ndarray) -> np.ndarray:
    """``(C, H, W, D)`` probabilities -> ``(H, W, D)`` uint8 argmax (first class on ties), one
    contiguous pass per class instead of numpy's strided argmax over axis 0."""
    best, labels = probs[0], np.zeros(probs.shape[1:], dtype=np.uint8)
    for c in range(1, probs.shape[0]):
        higher = probs[c] > best
        labels[higher] = c
        best = np.where(higher, probs[c], best) if c < probs.shape[0] - 1 else best
    return labels


def _solve_box(solve: Callable, image, seeds, spacing, prior, box, max_voxels, band_params, labels=False) -> np.ndarray:
    """``solve(image, seeds, spacing, prior, faces[, block_mean_grid])`` on ``box`` of the volume:
    directly, or on the coarsest grid of the pyramid above ``max_voxels`` and then down by
    :func:`_walk_down`; the probabilities, or with ``labels`` the class map."""
    img, sd = image[box], seeds[box]
    pr = prior[(slice(None),) + box] if prior is not None else None
    sides = [(b.start > 0, b.stop < n) for b, n in zip(box, image.shape)]
    ratios = pyramid(img.shape, spacing, max_voxels)
    if not ratios:
        probs = solve(img, sd, spacing, pr, _open_faces(img.shape, sides))
        return class_map(probs) if labels else probs
    return _coarse_to_fine(solve, img, sd, spacing, pr, sides, ratios, band_params, labels)


def _open_faces(shape: Sequence[int], sides) -> np.ndarray:
    """The faces of a box of ``shape`` that lie inside the volume (``sides``: per axis, whether the
    low and high face do); the random walk fixes them to the prior."""
    faces = np.zeros(tuple(shape), bool)
    for ax, (low, high) in enumerate(sides):
        idx = [slice(None)] * 3
        for inside, at in ((low, 0), (high, -1)):
            if inside:
                idx[ax] = at
                faces[tuple(idx)] = True
    return faces


def _solver(method, params, crf_on_walk: bool = True) -> Callable:
    def solve(image, seeds, spacing, prior, faces, block_mean_grid=False):
        if method == "crf" and crf_on_walk:
            walk_params = _on_grid(RandomWalkParams(), block_mean_grid)
            walk = _solve("random_walk", image, seeds, spacing, prior, walk_params, faces)
            prior = sharpened(walk, WALK_SHARPNESS)
        return _solve(method, image, seeds, spacing, prior, _on_grid(params, block_mean_grid), faces)

    return solve


def _on_grid(params, block_mean_grid: bool):
    """``params`` for a solve on a pyramid's coarse grid (``block_mean_grid``): there each voxel is
    the mean of a block of at least two voxels a side, which already evens out what the random
    walk's :attr:`~lib.scribbles.random_walk.RandomWalkParams.smoothing` is for, so the walk reads
    its edges unsmoothed."""
    if block_mean_grid and isinstance(params, RandomWalkParams):
        return replace(params, smoothing=0.0)
    return params


def _solve(method, image, seeds, spacing, prior, params, faces) -> np.ndarray:
    if method == "crf":
        return dense_crf(image, prior, spacing, seeds, params)
    return random_walk(image, seeds, spacing, prior.shape[0], prior, params, fixed=faces)


def _coarse_to_fine(solve, image, seeds, spacing, prior, sides, ratios, band_params, labels=False) -> np.ndarray:
    """:mod:`lib.scribbles.multiscale`: ``solve`` on the coarsest grid, then one level down at a
    time, the band along the boundary re-solved by a random walk (``band_params``) pulled toward
    the level above, every other voxel fixed to its parent's class."""
    strokes = np.flatnonzero(seeds != NO_SEED)
    levels = [
        dict(
            image=image,
            shape=image.shape,
            spacing=list(spacing),
            prior=prior,
            strokes=(strokes, seeds.ravel()[strokes].astype(np.int64)),
        )
    ]
    for r in ratios:
        below = levels[-1]
        img = block_mean(below["image"], r)
        levels.append(
            dict(
                image=img,
                shape=img.shape,
                spacing=[s * k for s, k in zip(below["spacing"], r)],
                prior=block_mean(below["prior"], r) if below["prior"] is not None else None,
                strokes=coarse_seeds(*below["strokes"], below["shape"], r),
            )
        )
    top = levels[-1]
    probs = solve(
        top["image"],
        _seed_grid(top["strokes"], top["shape"]),
        top["spacing"],
        top["prior"],
        _open_faces(top["shape"], sides),
        block_mean_grid=True,
    )
    for level, r in reversed(list(enumerate(ratios))):
        probs = _walk_down(probs, levels[level], r, band_params, labels=labels and level == 0)
    return probs


def _seed_grid(strokes, shape) -> np.ndarray:
    grid = np.full(int(np.prod(shape)), NO_SEED, dtype=np.int64)
    grid[strokes[0]] = strokes[1]
    return grid.reshape(shape)


def _walk_down(coarse: np.ndarray, level: dict, ratio, params: RandomWalkParams, labels: bool = False) -> np.ndarray:
    """``(C, h, w, d)`` probabilities of the grid above -> ``(C, H, W, D)`` on ``level``, or its
    ``(H, W, D)`` class map with ``labels`` (a quarter of the memory traffic of probabilities)."""
    num_classes, shape = coarse.shape[0], level["shape"]
    parent = class_map(coarse)
    stroke_index, stroke_class = level["strokes"]
    band = np.setdiff1d(band_children(boundary(parent), ratio, shape), stroke_index, assume_unique=True)
    solved = None
    if band.size:
        parent_class = parent.ravel()

        def fixed_class(index):
            cls = parent_class[coarse_index(index, shape, ratio)]
            at = np.minimum(np.searchsorted(stroke_index, index), max(stroke_index.size - 1, 0))
            hit = stroke_index[at] == index if stroke_index.size else np.zeros(index.shape, bool)
            cls[hit] = stroke_class[at[hit]]
            return cls

        pulled_to = coarse.reshape(num_classes, -1)[:, coarse_index(band, shape, ratio)]
        solved = walk_free(
            level["image"],
            band,
            level["spacing"],
            fixed_class,
            num_classes,
            pulled_to,
            params,
            window=intensity_window(level["image"]),
        )
    if labels:
        out = expand(parent, ratio, shape)
        flat = out.reshape(-1)
        if solved is not None:
            flat[band] = class_map(solved)
        flat[stroke_index] = stroke_class
        return out
    out = expand(coarse, ratio, shape)
    flat = out.reshape(num_classes, -1)
    if solved is not None:
        flat[:, band] = solved
    flat[:, stroke_index] = 0.0
    flat[stroke_class, stroke_index] = 1.0
    return out
