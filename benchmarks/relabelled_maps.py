"""How right ``can_em``'s relabelled training maps are: the maps its last E step saved under the
datastore tag ``can_em`` against the training volumes' dense truth, per class (precision: voxels
labelled k that are truly k; coverage: voxels truly k that are labelled k), pooled over the
volumes. A diagnostic of finished ``benchmarks/accuracy.py`` rows: the truth is read here only,
it never reached their training.

    python benchmarks/relabelled_maps.py /work/runs/cebase/can_em_base ...

Each argument is the workdir of one accuracy row (``<workdir>/studies/labels/can_em`` and
``<workdir>/../data/groundtruth``). Adds those rows to ``benchmarks/results/relabelled_maps.json``
(replacing a row of the same name) and regenerates ``benchmarks/results/relabelled_maps.md`` from
every row in it.
"""

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from components import row_json  # noqa: E402

from common import RESULTS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+")
    args = parser.parse_args()
    path = os.path.join(RESULTS, "relabelled_maps.json")
    rows = json.load(open(path))["rows"] if os.path.exists(path) else []
    for work in args.workdirs:
        r = score_row(work)
        print(r, flush=True)
        rows = [old for old in rows if old["row"] != r["row"]] + [r]
    with open(path, "w") as f:
        json.dump({"rows": rows}, f, indent=1)
    with open(os.path.join(RESULTS, "relabelled_maps.md"), "w") as f:
        f.write("\n".join(report(rows)) + "\n")


def score_row(work):
    """Precision and coverage per class of the maps one accuracy row's last E step saved."""
    from lib.scribbles.convention import ScribbleConvention

    row = row_json(work)
    convention = ScribbleConvention(row["labels"])
    truth_dir = os.path.join(os.path.dirname(os.path.normpath(work)), "data", "groundtruth")
    hit, labelled, total = (np.zeros(convention.num_classes) for _ in range(3))
    maps = sorted(glob.glob(os.path.join(work, "studies", "labels", "can_em", "*.nii.gz")))
    for path in maps:
        index, annotated = convention.targets(np.asarray(nib.load(path).dataobj).astype(np.int64))
        truth = np.asarray(nib.load(os.path.join(truth_dir, os.path.basename(path))).dataobj)
        for k in range(convention.num_classes):
            mine = annotated & (index == k)
            hit[k] += np.sum(mine & (truth == k))
            labelled[k] += mine.sum()
            total[k] += np.sum(truth == k)
    names = convention.class_names
    return {
        "row": row["recipe"],
        "volumes": len(maps),
        "precision": dict(zip(names, (hit / np.maximum(labelled, 1)).round(3).tolist())),
        "coverage": dict(zip(names, (hit / np.maximum(total, 1)).round(3).tolist())),
    }


def report(rows):
    """The markdown table of every row scored so far (rows re-scored replace their earlier entry)."""
    names = list(rows[0]["precision"])
    lines = [
        "# can_em: relabelled training maps against the dense truth",
        "",
        "Command: `python benchmarks/relabelled_maps.py <can_em accuracy row workdirs>` (adds or replaces "
        "those rows; the others are kept)  ",
        "Data: the maps of each row's last E step (datastore tag `can_em`) on its training volumes; pooled.",
        "",
        "| row | volumes | "
        + " | ".join(f"precision {n}" for n in names)
        + " | "
        + " | ".join(f"coverage {n}" for n in names)
        + " |",
        "|---|---|" + "---|" * (2 * len(names)),
    ]
    for r in rows:
        lines.append(
            f"| `{r['row']}` | {r['volumes']} | "
            + " | ".join(f"{v:.3f}" for v in r["precision"].values())
            + " | "
            + " | ".join(f"{v:.3f}" for v in r["coverage"].values())
            + " |"
        )
    return lines


if __name__ == "__main__":
    main()
