"""Scribble refinement, side by side in one run, on the same phantoms and simulated scribbles.

Task (3D Slicer's binary scribbles mode): for each phantom and each class, foreground strokes are
that class's simulated strokes, background strokes all the others; the method returns the
class's mask. Methods:

* ``graphcut`` -- MONAI Label's ``HistogramBasedGraphCut`` pipeline rebuilt from its own transforms
  (``monailabel.scribbles.infer`` itself imports torchvision): resample to 2.5 x 2.5 x 5 mm, scale
  intensities (the 0.5-99.5 percentiles, not the radiology app's CT window), histogram
  likelihoods, ISeg unary, max-flow (lamda 1, sigma 0.1), nearest resampling back.
* ``crf``, ``random_walk`` -- ours from the strokes alone (:func:`lib.scribbles.refine.from_strokes`,
  no model, like the graph cut).
* ``random_walker_plain`` -- ``skimage.segmentation.random_walker(mode='cg_j')`` on the full volume,
  strokes as seeds (same beta and mm spacing as ours: only cropping and prior seeds differ).
* ``*+seg`` rows -- ours refining a degraded segmentation carried in the label file (truth eroded
  by 1 voxel in-plane and shifted by 3 voxels), the graph cut cannot use it; ``prior_only`` is
  that segmentation unrefined.

Dice against the dense truth, wall time from in-memory arrays to the mask at input resolution
(medians over phantoms x classes), for 160 x 160 x 16 (1.5 x 1.5 x 8 mm) and 256 x 256 x 32
(1.25 x 1.25 x 4 mm) volumes.

    python benchmarks/refinement.py [--phantoms 4]

Writes ``benchmarks/results/refinement.md`` and ``.json``.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from common import RESULTS, machine  # noqa: E402

SIZES = {"160x160x16": ((160, 160, 16), (1.5, 1.5, 8.0)), "256x256x32": ((256, 256, 32), (1.25, 1.25, 4.0))}


def graphcut(image, fg, bg, spacing):
    """MONAI Label's HistogramBasedGraphCut, transform for transform (bg = 2, fg = 3, as its defaults)."""
    from monai.data import MetaTensor
    from monai.transforms import Compose, ScaleIntensityRanged, Spacingd
    from monailabel.scribbles.transforms import (
        ApplyGraphCutOptimisationd,
        MakeISegUnaryd,
        MakeLikelihoodFromScribblesHistogramd,
    )

    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    scribbles = np.zeros(image.shape, np.float32)
    scribbles[bg], scribbles[fg] = 2, 3
    lo, hi = np.percentile(image, [0.5, 99.5])
    d = {
        "image": MetaTensor(torch.as_tensor(image[None]), affine=affine),
        "label": MetaTensor(torch.as_tensor(scribbles[None]), affine=affine),
    }
    pipeline = Compose(
        [
            Spacingd(["image", "label"], pixdim=(2.5, 2.5, 5.0), mode=["bilinear", "nearest"]),
            ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
            MakeLikelihoodFromScribblesHistogramd(
                "image",
                scribbles="label",
                post_proc_label="prob",
                scribbles_bg_label=2,
                scribbles_fg_label=3,
                num_bins=64,
                normalise=True,
            ),
            MakeISegUnaryd(
                "image", logits="prob", scribbles="label", unary="unary", scribbles_bg_label=2, scribbles_fg_label=3
            ),
            ApplyGraphCutOptimisationd(unary="unary", pairwise="image", post_proc_label="pred", lamda=1.0, sigma=0.1),
        ]
    )
    pred = np.asarray(pipeline(d)["pred"])[0].astype(np.float32)
    zoom = np.asarray(image.shape) / np.asarray(pred.shape)
    return ndimage.zoom(pred, zoom, order=0)[tuple(slice(0, n) for n in image.shape)] > 0


def ours(method, image, seeds, spacing, prior):
    """Our refinement of ``prior`` as the app corrects a segment: the box around the strokes."""
    from lib.scribbles.crf import DenseCRFParams
    from lib.scribbles.random_walk import RandomWalkParams
    from lib.scribbles.refine import refine

    params = DenseCRFParams() if method == "crf" else RandomWalkParams()
    return refine(method, image, seeds, spacing, prior, params).argmax(0) == 1


def strokes_only(method, image, seeds, spacing):
    """What the infer task does with no model and no current segment."""
    from lib.scribbles.crf import DenseCRFParams
    from lib.scribbles.random_walk import RandomWalkParams
    from lib.scribbles.refine import from_strokes

    params = DenseCRFParams() if method == "crf" else RandomWalkParams()
    return from_strokes(method, image, seeds, spacing, 2, params).argmax(0) == 1


def plain_random_walker_labels(image, seeds, spacing):
    """``skimage.segmentation.random_walker`` on the same intensities and beta as ours: the class
    index of every voxel from ``seeds`` (class indices, ``NO_SEED`` where free)."""
    from skimage.segmentation import random_walker

    from lib.scribbles.prior import normalise_intensity
    from lib.scribbles.random_walk import RandomWalkParams

    markers = np.where(seeds >= 0, seeds + 1, 0)  # skimage: 0 = free, labels from 1
    walked = random_walker(
        normalise_intensity(image), markers, beta=RandomWalkParams().beta, mode="cg_j", spacing=spacing
    )
    return walked - 1


def plain_random_walker(image, seeds, spacing):
    """:func:`plain_random_walker_labels` of binary seeds (0 background, 1 foreground) as a mask."""
    return plain_random_walker_labels(image, seeds, spacing) == 1


def degraded(truth):
    """A plausible but wrong current segmentation: eroded in-plane and shifted."""
    eroded = ndimage.binary_erosion(truth, structure=np.ones((3, 3, 1)))
    return np.roll(eroded, 3, axis=0)


def dice(a, b):
    s = a.sum() + b.sum()
    return 2.0 * (a & b).sum() / s if s else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", type=int, default=4)
    args = parser.parse_args()

    from lib.datasets.phantoms import make_cardiac_phantom
    from lib.scribbles.convention import NO_SEED, ScribbleConvention
    from lib.scribbles.prior import segmentation_prior
    from lib.scribbles.simulate import simulate_scribbles

    conv = ScribbleConvention({"lv": 1, "myocardium": 2, "rv": 3})
    rows = {}
    for size, (shape, spacing) in SIZES.items():
        for seed in range(args.phantoms):
            vol = make_cardiac_phantom(200 + seed, shape=shape, spacing=spacing)
            strokes = conv.seeds(simulate_scribbles(vol.label, vol.spacing, conv, seed=seed))
            for name, k in conv.labels.items():
                truth = vol.label == k
                seeds = np.where(strokes == NO_SEED, NO_SEED, (strokes == k).astype(np.int64))
                fg, bg = seeds == 1, seeds == 0
                seg = degraded(truth)
                runs = {
                    "graphcut": lambda: graphcut(vol.image, fg, bg, spacing),
                    "crf": lambda: strokes_only("crf", vol.image, seeds, spacing),
                    "random_walk": lambda: strokes_only("random_walk", vol.image, seeds, spacing),
                    "random_walker_plain": lambda: plain_random_walker(vol.image, seeds, spacing),
                    "prior_only+seg": lambda: seg,
                    "crf+seg": lambda: ours(
                        "crf", vol.image, seeds, spacing, segmentation_prior(seg.astype(int), 2, 0.9)
                    ),
                    "random_walk+seg": lambda: ours(
                        "random_walk", vol.image, seeds, spacing, segmentation_prior(seg.astype(int), 2, 0.9)
                    ),
                }
                for method, fn in runs.items():
                    t = time.perf_counter()
                    mask = fn()
                    elapsed = time.perf_counter() - t
                    rows.setdefault((size, method), []).append(
                        {"dice": dice(mask, truth), "seconds": elapsed, "class": name, "phantom": seed}
                    )
            print(f"{size} phantom {seed} done", flush=True)
    write(rows, args)


def write(rows, args):
    summary = {}
    for (size, method), runs in rows.items():
        summary.setdefault(size, {})[method] = {
            "dice_mean": float(np.nanmean([r["dice"] for r in runs])),
            "dice_std": float(np.nanstd([r["dice"] for r in runs])),
            "seconds_median": float(np.median([r["seconds"] for r in runs])),
            "dice_per_class": {
                c: float(np.nanmean([r["dice"] for r in runs if r["class"] == c])) for c in ("lv", "myocardium", "rv")
            },
            "runs": len(runs),
        }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "refinement.json"), "w") as f:
        json.dump({"machine": machine(), "summary": summary}, f, indent=1)
    lines = [
        "# Scribble refinement: ours vs MONAI Label's graph cut vs plain random walker",
        "",
        f"Command: `python benchmarks/refinement.py --phantoms {args.phantoms}`  ",
        f"Machine: {machine()}  ",
        f"Binary (Slicer) mode, {args.phantoms} phantoms x 3 classes per size; Dice mean ± std, "
        "median wall time (arrays in, mask out at input resolution).",
        "",
    ]
    for size, methods in summary.items():
        gc = methods["graphcut"]["seconds_median"]
        plain = methods["random_walker_plain"]["seconds_median"]
        lines += [
            f"## {size}",
            "",
            "| method | Dice | Dice lv / myo / rv | median s | time / graphcut | speed-up vs plain random_walker |",
            "|---|---|---|---|---|---|",
        ]
        for m, s in methods.items():
            pc = " / ".join(f"{s['dice_per_class'][c]:.3f}" for c in ("lv", "myocardium", "rv"))
            timing = (
                "n/a | n/a | n/a"
                if m.startswith("prior_only")
                else f"{s['seconds_median']:.3f} | {s['seconds_median'] / gc:.2f} | {plain / s['seconds_median']:.1f}x"
            )
            lines.append(f"| `{m}` | {s['dice_mean']:.3f} ± {s['dice_std']:.3f} | {pc} | {timing} |")
        lines.append("")
    ratios = [
        methods[m]["seconds_median"] / methods["graphcut"]["seconds_median"]
        for methods in summary.values()
        for m in ("crf", "random_walk")
    ]
    lines += [
        "Reading: with scribbles only, both our methods beat MONAI Label's histogram graph cut on Dice at both "
        "sizes (the graph cut loses the thin myocardium). Ours start from a random walk over the whole volume "
        "(strokes alone reach unscribbled slices on real volumes), solved on a pyramid of 2x coarser grids with "
        f"the boundary walked back to full resolution: tenths of a second, {min(ratios):.1f}-{max(ratios):.1f}x "
        "the graph cut's, which works on a 2.5 x 2.5 x 5 mm grid. Refining a wrong segmentation (`+seg`: eroded "
        "and shifted by 3 voxels, strokes on every slice) gains less: the prior is trusted where no stroke "
        "contradicts it.",
        "",
    ]
    with open(os.path.join(RESULTS, "refinement.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(
        0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "scribble_seg")
    )
    main()
