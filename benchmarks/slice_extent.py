"""Where a row's false positives lie along z: inside the slices the true structure spans, or beyond them.

A 2.5D network sees few slices at once; a structure it paints into the slices above or below the
heart shows as a low precision and an HD95 in multiples of the slice spacing. This re-segments
the accuracy benchmark's held-out test phantoms with one row's trained weights (as ``accuracy.py``
does) and reports, per test volume and class, the true and predicted slice ranges and the fraction
of false-positive voxels in slices where the true structure is absent.

    python benchmarks/slice_extent.py <accuracy workdir>/<row> --seed 1000 --name slice_extent_seed1000

Writes ``benchmarks/results/<name>.md`` and ``.json``.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from accuracy import results_dir  # noqa: E402

from common import RESULTS, machine, make_app  # noqa: E402


def extent(mask):
    """First and last slice (last axis) where ``mask`` is set; ``None`` if empty."""
    z = np.nonzero(mask.any(axis=(0, 1)))[0]
    return (int(z[0]), int(z[-1])) if len(z) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row_workdir", help="<accuracy workdir>/<row>, with app/model holding the trained weights")
    parser.add_argument("--seed", type=int, default=0, help="the accuracy run's --seed (where its row JSON is)")
    parser.add_argument("--name", default="slice_extent")
    args = parser.parse_args()
    from lib.scribbles.convention import ScribbleConvention

    row_dir = os.path.normpath(args.row_workdir)
    with open(os.path.join(results_dir(args.seed), os.path.basename(row_dir) + ".json")) as f:
        row = json.load(f)
    data = os.path.join(os.path.dirname(row_dir), "data")
    recipe, cases = row["base_recipe"], sorted(row["per_case"])
    work = tempfile.mkdtemp(prefix="slice_extent_")
    app = make_app(work, os.path.join(data, "studies"), {"models": recipe, **row.get("conf", {})})
    for f in (f"{recipe}.pt", f"{recipe}.json"):
        shutil.copy(os.path.join(row_dir, "app", "model", f), os.path.join(work, "app", "model", f))
    convention = ScribbleConvention(row["labels"])

    results, lines = (
        [],
        [
            f"# False positives along z: `{row['recipe']}` (seed {args.seed})",
            "",
            f"Command: `python benchmarks/slice_extent.py <accuracy workdir>/{os.path.basename(row_dir)} "
            f"--seed {args.seed} --name {args.name}`  ",
            f"Machine: {machine()}  ",
            f"Weights: the row's training ({row.get('trained_at')}); its {len(cases)} held-out test phantoms. "
            "Slices are numbered along z; `FP beyond` = false-positive voxels in slices where the true "
            "structure is absent, as a fraction of all its false positives.",
            "",
            "| case | class | true slices | predicted slices | FP voxels | FP beyond |",
            "|---|---|---|---|---|---|",
        ],
    )
    for case in cases:
        res = app.infer({"model": recipe, "image": case, "device": "cpu"})
        pred = np.asarray(nib.load(res["file"]).dataobj)
        os.unlink(res["file"])
        truth = np.asarray(nib.load(os.path.join(data, "groundtruth", f"{case}.nii.gz")).dataobj)
        for name, value in convention.labels.items():
            p, t = pred == value, truth == value
            fp = p & ~t
            beyond = fp & ~t.any(axis=(0, 1))[None, None, :]
            r = {
                "case": case,
                "class": name,
                "true": extent(t),
                "pred": extent(p),
                "fp": int(fp.sum()),
                "fp_beyond_fraction": float(beyond.sum() / max(1, fp.sum())),
            }
            results.append(r)
            lines.append(
                f"| {case} | {name} | {r['true']} | {r['pred']} | {r['fp']} | {100 * r['fp_beyond_fraction']:.0f} % |"
            )
    with open(os.path.join(RESULTS, f"{args.name}.json"), "w") as f:
        json.dump({"machine": machine(), "row": row["recipe"], "seed": args.seed, "rows": results}, f, indent=1)
    with open(os.path.join(RESULTS, f"{args.name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
