"""Quality of Scribble2D5's label propagation (pseudo mask) against the dense truth, per class,
for a range of supervoxel sizes and SLIC compactness -- the figures behind the defaults of
:class:`lib.scribbles.propagation.PropagationParams`.

Phantoms ``100 ..`` (disjoint from the accuracy benchmark's ``0 .. 19``) with the app's simulated
scribbles; for each setting, per class: **precision** (pseudo-labelled voxels of class k that are
truly k) and **coverage** (voxels of class k that the pseudo mask labels k), pooled over the
volumes. The network trains on the pseudo mask, so a wrong pseudo label is taught as truth:
precision matters more than coverage (the strokes alone already train ``pce``).

    python benchmarks/propagation.py [--phantoms 4]

Writes ``benchmarks/results/propagation.md`` and ``.json``.
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from common import RESULTS, machine  # noqa: E402

SETTINGS = [
    (12.0, 0.05, {}),
    (10.0, 0.05, {}),
    (8.0, 0.05, {}),
    (6.0, 0.05, {}),
    (12.0, 0.2, {}),
    (8.0, 0.2, {}),
    (8.0, 0.02, {}),
    (12.0, 0.05, {"myocardium": 8.0}),
    (12.0, 0.05, {"myocardium": 6.0}),
    (12.0, 0.05, {"myocardium": 8.0, "rv": 10.0}),
    (12.0, 0.05, {"myocardium": 6.0, "background": 16.0}),
    (12.0, 0.05, {"myocardium": 6.0}, True),
]
"""(supervoxel_mm, compactness, per-class sizes[, outer_slices_background]) of each row."""


def load_case(root, case):
    img = nib.load(os.path.join(root, "studies", f"{case}.nii.gz"))
    truth = np.asarray(nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz")).dataobj)
    strokes = np.asarray(nib.load(os.path.join(root, "studies", "labels", "final", f"{case}.nii.gz")).dataobj)
    return np.asarray(img.dataobj, dtype=np.float32), img.header.get_zooms()[:3], truth, strokes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", type=int, default=4)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()

    from lib.datasets.sample import build_studies
    from lib.scribbles.convention import ScribbleConvention
    from lib.scribbles.propagation import PropagationParams, propagate

    root = tempfile.mkdtemp(prefix="propagation_")
    manifest = build_studies(root, "phantoms", n=args.phantoms, scribbled=args.phantoms, seed=args.seed)
    convention = ScribbleConvention(manifest["labels"])
    # (image, spacing, truth in the scribble convention, strokes) per volume
    cases = [
        (image, spacing, convention.from_dense(truth), strokes)
        for image, spacing, truth, strokes in (load_case(root, c) for c in sorted(manifest["cases"]))
    ]
    names = {"background": convention.background_scribble_id, **manifest["labels"]}
    default = PropagationParams()
    rows = []
    for mm, compactness, per_class, *outer in SETTINGS:
        params = PropagationParams(
            supervoxel_mm=mm,
            compactness=compactness,
            class_supervoxel_mm=tuple(per_class.items()),
            outer_slices_background=any(outer),
        )
        hit, labelled, total, stroke_hit = (np.zeros(len(names)) for _ in range(4))
        for image, spacing, dense, strokes in cases:
            pseudo, _ = propagate(image, strokes, spacing, convention, params)
            for i, value in enumerate(names.values()):
                hit[i] += np.sum((pseudo == value) & (dense == value))
                labelled[i] += np.sum(pseudo == value)
                total[i] += np.sum(dense == value)
                stroke_hit[i] += np.sum((strokes == value) & (dense == value))
        rows.append(
            {
                "supervoxel_mm": mm,
                "compactness": compactness,
                "class_supervoxel_mm": per_class,
                "outer_slices_background": params.outer_slices_background,
                "default": params == default,
                "precision": dict(zip(names, (hit / np.maximum(labelled, 1)).round(3).tolist())),
                "coverage": dict(zip(names, (hit / np.maximum(total, 1)).round(3).tolist())),
                "strokes_coverage": dict(zip(names, (stroke_hit / np.maximum(total, 1)).round(3).tolist())),
            }
        )
        print(rows[-1], flush=True)

    lines = [
        "# Label propagation: pseudo-mask precision and coverage per class",
        "",
        f"Command: `python benchmarks/propagation.py --phantoms {args.phantoms} --seed {args.seed}`  ",
        f"Machine: {machine()}  ",
        f"Data: phantoms {args.seed}..{args.seed + args.phantoms - 1} (160x160x16, 1.5x1.5x8 mm; not in the accuracy "
        "benchmark) with simulated scribbles; pooled over the volumes. The strokes alone cover "
        + ", ".join(f"{n} {100 * v:.1f} %" for n, v in rows[0]["strokes_coverage"].items())
        + ".",
        "",
        "Per-class sizes (`scribble2d5_class_supervoxel_mm`, :func:`propagate_multiscale`) propagate the named "
        "classes through their own supervoxels and the rest through the row's size.",
        "",
        "| supervoxel (mm) | compactness | "
        + " | ".join(f"precision {n}" for n in names)
        + " | "
        + " | ".join(f"coverage {n}" for n in names)
        + " |",
        "|" + "---|" * (2 + 2 * len(names)),
    ]
    for r in rows:
        mark = " (default)" if r["default"] else ""
        sizes = "".join(f", {n} {v:g}" for n, v in r.get("class_supervoxel_mm", {}).items())
        sizes += ", outer slices background" if r.get("outer_slices_background") else ""
        lines.append(
            f"| {r['supervoxel_mm']:g}{sizes}{mark} | {r['compactness']:g} | "
            + " | ".join(f"{r['precision'][n]:.3f}" for n in names)
            + " | "
            + " | ".join(f"{r['coverage'][n]:.3f}" for n in names)
            + " |"
        )
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "propagation.json"), "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=1)
    with open(os.path.join(RESULTS, "propagation.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
