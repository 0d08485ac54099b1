"""Weak-Net on the phantoms: IoU against the number of surface points, vs annotating whole slices
with the same effort (the paper's Table 1 / Fig. 6 question).

Structure: the LV blood pool (genus 0, star-shaped). For each ``N`` in ``--points``:

* **weaknet**: ``N`` points clicked evenly over the LV surface of each training phantom (tag
  ``points``), templates fitted, ``weaknet`` trained; IoU of its segmentation of held-out phantoms;
  the IoU of the templates themselves on the training phantoms is reported too (annotation
  quality before any network);
* **slices**: the same effort spent outlining whole slices: a polygon click every
  ``--vertex-mm`` mm of LV contour, so a slice costs ``perimeter / vertex_mm`` clicks; ``k`` evenly
  spaced LV slices per volume with ``k`` the number whose cost is closest to ``N`` (at least 1),
  fully annotated (LV vs background) and trained with ``pce`` (unannotated slices ignored); with
  ``--empty-slices`` every slice without LV is also marked background at no cost (what a
  template tells the network for free; without it the baseline never sees those slices).

Same phantoms, seed and budget for both. ``--template-only`` skips the training (seconds).

    python benchmarks/points.py [--train 8 --test 6 --points 10,25,50,125 --epochs 10 --epoch-length 50]

Writes ``benchmarks/results/points.md`` and ``.json``.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from common import RESULTS, machine, make_app, train_request  # noqa: E402

STRUCTURE = "lv"


def iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / max(1, (a | b).sum()))


def slice_cost(mask2d, spacing_xy, vertex_mm):
    """Polygon clicks to outline ``mask2d``: its perimeter (mm) over the vertex spacing."""
    from skimage.measure import perimeter

    return perimeter(mask2d) * float(np.mean(spacing_xy)) / vertex_mm


def annotated_slices(truth, spacing, n_points, vertex_mm):
    """(slice indices, effort in clicks) of the slice baseline matching ``n_points`` clicks."""
    z_lv = [z for z in range(truth.shape[2]) if truth[..., z].any()]
    costs = {z: slice_cost(truth[..., z], spacing[:2], vertex_mm) for z in z_lv}
    k = max(1, int(round(n_points / np.mean(list(costs.values())))))
    k = min(k, len(z_lv))
    chosen = [z_lv[int(i)] for i in np.linspace(0, len(z_lv) - 1, k + 2)[1:-1].round()] if k < len(z_lv) else z_lv
    return sorted(set(chosen)), float(sum(costs[z] for z in set(chosen)))


def run_n(n, args, root, cases, train, test, convention):
    from lib.datasets.sample import label_info
    from lib.scribbles.convention import BACKGROUND_CLASS, NO_SEED
    from lib.scribbles.points import template_labels
    from lib.scribbles.template import surface_points

    cls = convention.class_id(STRUCTURE)
    work = os.path.join(args.workdir, f"n{n}")
    app = None if args.template_only else make_app(work, os.path.join(root, "studies"), {"models": "weaknet,pce"})
    template_iou, efforts = [], []
    for i, case in enumerate(train):
        img = nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz"))
        truth = np.asarray(img.dataobj) == cls
        spacing = img.header.get_zooms()[:3]
        pts = surface_points(truth, spacing, n, seed=args.seed * 1000 + i)
        template = template_labels({cls: pts}, truth.shape, spacing)
        template_iou.append(iou(template == cls, truth))
        chosen, effort = annotated_slices(truth, spacing, n, args.vertex_mm)
        efforts.append((len(chosen), effort))
        if app is None:
            continue
        clicks = np.zeros(truth.shape, np.uint8)
        clicks[tuple(pts.T)] = cls
        path = os.path.join(work, f"{case}_points.nii.gz")
        nib.save(nib.Nifti1Image(clicks, img.affine), path)
        app.datastore().save_label(case, path, "points", {})
        seeds = np.full(truth.shape, NO_SEED, np.int64)
        for z in chosen:
            seeds[..., z] = np.where(truth[..., z], cls, BACKGROUND_CLASS)
        if args.empty_slices:  # slices beyond the structure marked background at no click cost
            seeds[..., ~truth.any(axis=(0, 1))] = BACKGROUND_CLASS
        path = os.path.join(work, f"{case}_slices.nii.gz")
        nib.save(nib.Nifti1Image(convention.from_seeds(seeds).astype(np.uint8), img.affine), path)
        app.datastore().save_label(case, path, "final", {"label_info": label_info(convention)})
    row = {
        "points": n,
        "template_iou_train": float(np.mean(template_iou)),
        "slices_per_volume": float(np.mean([e[0] for e in efforts])),
        "slice_effort_clicks": float(np.mean([e[1] for e in efforts])),
    }
    if app is None:
        return row
    for model in ("weaknet", "pce"):
        t = time.time()
        app.train(train_request(model, args, val_split=0.0))
        scores = []
        for case in test:
            res = app.infer({"model": model, "image": case, "device": args.device})
            pred = np.asarray(nib.load(res["file"]).dataobj)
            os.unlink(res["file"])
            truth = np.asarray(nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz")).dataobj) == cls
            scores.append(iou(pred == cls, truth))
        name = "weaknet" if model == "weaknet" else "slices"
        row[f"{name}_iou_test"] = float(np.mean(scores))
        row[f"{name}_iou_test_std"] = float(np.std(scores))
        row[f"{name}_train_minutes"] = round((time.time() - t) / 60, 1)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--test", type=int, default=6)
    parser.add_argument("--points", default="10,25,50,125")
    parser.add_argument("--vertex-mm", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-length", type=int, default=50)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--template-only", action="store_true")
    parser.add_argument(
        "--empty-slices",
        action="store_true",
        help="slice baseline: also mark every slice without the structure as background (0 clicks), "
        "the information a template gives for free",
    )
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="points_")

    from lib.datasets.sample import build_studies
    from lib.scribbles.convention import ScribbleConvention

    root = os.path.join(args.workdir, "data")
    manifest = build_studies(root, "phantoms", n=args.train + args.test, scribbled=0, seed=args.seed)
    convention = ScribbleConvention(manifest["labels"])
    cases = sorted(manifest["cases"])
    train, test = cases[: args.train], cases[args.train :]
    start = time.time()
    rows = [run_n(int(n), args, root, cases, train, test, convention) for n in args.points.split(",")]
    result = {
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k != "workdir"},
        "minutes": round((time.time() - start) / 60, 1),
        "rows": rows,
    }
    name = "points_templates" if args.template_only else ("points_empty_slices" if args.empty_slices else "points")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    flags = (
        " --template-only"
        if args.template_only
        else f" --epochs {args.epochs} --epoch-length {args.epoch_length} --batch {args.batch}"
        + (" --empty-slices" if args.empty_slices else "")
    )
    lines = [
        f"# Weak-Net: IoU of the {STRUCTURE.upper()} vs surface points, and vs whole slices of equal effort",
        "",
        f"Command: `python benchmarks/points.py --train {args.train} --test {args.test} --points {args.points} "
        f"--vertex-mm {args.vertex_mm} --seed {args.seed}{flags}`  ",
        f"Machine: {result['machine']}; {result['minutes']} min  ",
        f"Phantoms 160x160x16 at 1.5x1.5x8 mm; {args.train} annotated, {args.test} held out. A slice costs its "
        f"LV perimeter / {args.vertex_mm} mm polygon clicks.",
        "",
    ]
    if args.template_only:
        lines += [
            "| points per volume | template IoU (training volumes) | equal-effort slices per volume | their clicks |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['points']} | {r['template_iou_train']:.3f} | {r['slices_per_volume']:.1f} | "
            f"{r['slice_effort_clicks']:.0f} |"
            for r in rows
        ]
    else:
        lines += [
            "| points per volume | template IoU (train) | `weaknet` IoU (test) | slices per volume (clicks) | "
            "slices + `pce` IoU (test) |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['points']} | {r['template_iou_train']:.3f} | {r['weaknet_iou_test']:.3f} ± "
            f"{r['weaknet_iou_test_std']:.3f} | {r['slices_per_volume']:.1f} ({r['slice_effort_clicks']:.0f}) | "
            f"{r['slices_iou_test']:.3f} ± {r['slices_iou_test_std']:.3f} |"
            for r in rows
        ]
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
