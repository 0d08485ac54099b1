"""Can et al.'s seed areas against the dense truth: one 3D random walk or one 2D walk per stroked
axial slice (the paper's), at the thresholds ``tau`` the recipe offers.

``can_em`` trains its first M step on the seed areas (strokes grown where the walk is sure), so a
wrong seed-area voxel is taught as truth and a missing one is left to the network's guesses. Per
class, pooled over the volumes: **coverage** (voxels of class k the seed areas label k) and
**precision** (seed-area voxels of class k that truly are k).

* phantoms ``100 ..`` (disjoint from the accuracy benchmark's), strokes on every slice that shows a
  structure (the recipe's protocol, as ACDC's scribbles);
* with ``--real``: the development set of real CT / MR (:mod:`lib.datasets.development`), each
  structure against its surroundings, strokes on 3 axial slices as a Slicer user draws them.

    python benchmarks/seed_areas.py [--phantoms 6] [--real]

Writes ``benchmarks/results/seed_areas.md`` and ``.json``.
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

from common import REPO, RESULTS, machine  # noqa: E402

WALKS = ("3d", "slice")
TAUS = (0.95, 0.99)


def scores(grown, truth, classes):
    """``{class: [hit, labelled, total]}`` of one volume (class indices)."""
    return {
        k: [int(((grown == k) & (truth == k)).sum()), int((grown == k).sum()), int((truth == k).sum())] for k in classes
    }


def pooled(counts):
    hit, labelled, total = (sum(c[i] for c in counts) for i in range(3))
    return {"coverage": hit / max(total, 1), "precision": hit / labelled if labelled else float("nan")}


def grow(image, seeds, spacing, num_classes, walk, tau):
    from lib.scribbles.seed_areas import seed_areas

    t = time.perf_counter()
    grown = seed_areas(image, seeds, spacing, num_classes, tau=tau, per_slice=walk == "slice")
    return grown, time.perf_counter() - t


def phantom_rows(n, seed):
    from lib.datasets.sample import build_studies
    from lib.scribbles.convention import ScribbleConvention

    root = tempfile.mkdtemp(prefix="seed_areas_")
    manifest = build_studies(root, "phantoms", n=n, scribbled=n, seed=seed)
    convention = ScribbleConvention(manifest["labels"])
    names = convention.class_names
    counts = {(w, t): {k: [] for k in range(len(names))} for w in WALKS for t in TAUS}
    seconds = {w: [] for w in WALKS}
    for case in sorted(manifest["cases"]):
        img = nib.load(os.path.join(root, "studies", f"{case}.nii.gz"))
        image, spacing = np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]
        truth = np.asarray(nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz")).dataobj).astype(np.int64)
        label = os.path.join(root, "studies", "labels", "final", f"{case}.nii.gz")
        seeds = convention.seeds(np.asarray(nib.load(label).dataobj))
        for walk in WALKS:
            for tau in TAUS:
                grown, s = grow(image, seeds, spacing, convention.num_classes, walk, tau)
                seconds[walk].append(s)
                for k, c in scores(grown, truth, range(len(names))).items():
                    counts[(walk, tau)][k].append(c)
    rows = [
        {"data": "phantoms", "walk": w, "tau": t, "class": names[k], **pooled(counts[(w, t)][k])}
        for w in WALKS
        for t in TAUS
        for k in range(len(names))
    ]
    return rows, {w: float(np.median(v)) for w, v in seconds.items()}


def real_rows(seed):
    from lib.datasets.development import development_set
    from lib.scribbles.convention import ScribbleConvention
    from lib.scribbles.simulate import simulate_scribbles, slicer_protocol

    conv = ScribbleConvention({"structure": 1})
    counts = {(w, t): {0: [], 1: []} for w in WALKS for t in TAUS}
    per_structure = []
    for case in development_set(None, os.path.join(REPO, ".cache")):
        v = case.volume
        for name, index in case.labels.items():
            truth = (v.label == index).astype(np.int64)
            if truth.sum() == 0:
                continue
            scribbles = simulate_scribbles(
                truth.astype(np.uint8), v.spacing, conv, seed=seed, config=slicer_protocol(3)
            )
            seeds = conv.seeds(scribbles)
            for walk in WALKS:
                for tau in TAUS:
                    grown, _ = grow(v.image, seeds, v.spacing, conv.num_classes, walk, tau)
                    c = scores(grown, truth, (0, 1))
                    counts[(walk, tau)][0].append(c[0])
                    counts[(walk, tau)][1].append(c[1])
                    per_structure.append(
                        {"case": case.name, "structure": name, "walk": walk, "tau": tau, **pooled([c[1]])}
                    )
            print(f"{case.name} {name}: done", flush=True)
    rows = [
        {"data": "real, 3 slices", "walk": w, "tau": t, "class": cls, **pooled(counts[(w, t)][k])}
        for w in WALKS
        for t in TAUS
        for k, cls in ((1, "structure"), (0, "background"))
    ]
    return rows, per_structure


def write(rows, per_structure, seconds, args):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "seed_areas.json"), "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "rows": rows, "per_structure": per_structure}, f, indent=1)
    command = f"python benchmarks/seed_areas.py --phantoms {args.phantoms} --seed {args.seed}" + (
        " --real" if args.real else ""
    )
    lines = [
        "# Can et al.'s seed areas: 3D walk vs one 2D walk per stroked slice",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}  ",
        f"Median seconds per phantom volume: 3D {seconds['3d']:.2f}, per slice {seconds['slice']:.2f}",
        "",
        "Coverage (voxels of the class labelled so) and precision (seed-area voxels truly of the class), pooled.",
        "",
        "| data | walk | tau | class | coverage | precision |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['data']} | {r['walk']} | {r['tau']} | {r['class']} | {r['coverage']:.3f} | {r['precision']:.3f} |"
        for r in rows
    ]
    if per_structure:
        lines += ["", "Real structures at tau 0.99 (coverage / precision):", "", "| case | structure | 3d | slice |"]
        lines.append("|---|---|---|---|")
        at = {(r["case"], r["structure"], r["walk"]): r for r in per_structure if r["tau"] == 0.99}
        for case, structure in dict.fromkeys((c, s) for c, s, _ in at):
            a, b = at[(case, structure, "3d")], at[(case, structure, "slice")]
            lines.append(
                f"| {case} | {structure} | {a['coverage']:.2f} / {a['precision']:.2f} | "
                f"{b['coverage']:.2f} / {b['precision']:.2f} |"
            )
    with open(os.path.join(RESULTS, "seed_areas.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", type=int, default=6)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--real", action="store_true", help="also the development set of real volumes")
    args = parser.parse_args()
    rows, seconds = phantom_rows(args.phantoms, args.seed)
    per_structure = []
    if args.real:
        real, per_structure = real_rows(args.seed)
        rows += real
    write(rows, per_structure, seconds, args)


if __name__ == "__main__":
    main()
