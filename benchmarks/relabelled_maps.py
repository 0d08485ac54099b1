"""How right ``can_em``'s relabelled training maps are: the maps its last E step saved under the
datastore tag ``can_em`` against the training volumes' dense truth, per class (precision: voxels
labelled k that are truly k; coverage: voxels truly k that are labelled k), pooled over the
volumes. A diagnostic of finished ``benchmarks/accuracy.py`` rows: the truth is read here only,
it never reached their training.

    python benchmarks/relabelled_maps.py /work/runs/cebase/can_em_base ...
    python benchmarks/relabelled_maps.py --seed 1000 --seed-areas <workdir>/can_em_base ...

Each argument is the workdir of one accuracy row (``<workdir>/studies/labels/can_em`` and
``<workdir>/../data/groundtruth``), trained at ``--seed`` (its JSON is read from that seed's results
folder; rows of a seed other than 0 are named with it). ``--seed-areas`` adds, per workdir, a row of
the seed areas its first M step trained on (the row's own trainer grows them again from the
scribbles, at the image grid): what the first E step replaces. Adds those rows to
``benchmarks/results/relabelled_maps.json`` (replacing a row of the same name) and regenerates
``benchmarks/results/relabelled_maps.md`` from every row in it.
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
    parser.add_argument("--seed", type=int, default=0, help="training seed of the rows (accuracy.py --seed)")
    parser.add_argument("--seed-areas", action="store_true", help="also score each row's seed areas")
    args = parser.parse_args()
    path = os.path.join(RESULTS, "relabelled_maps.json")
    rows = json.load(open(path))["rows"] if os.path.exists(path) else []
    for work in args.workdirs:
        kinds = [False, True] if args.seed_areas else [False]
        for r in (score_row(work, args.seed, seed_areas=k) for k in kinds):
            print(r, flush=True)
            rows = [old for old in rows if old["row"] != r["row"]] + [r]
    with open(path, "w") as f:
        json.dump({"rows": rows}, f, indent=1)
    with open(os.path.join(RESULTS, "relabelled_maps.md"), "w") as f:
        f.write("\n".join(report(rows)) + "\n")


def score_row(work, seed=0, seed_areas=False):
    """Precision and coverage per class of the maps one accuracy row's last E step saved, or with
    ``seed_areas`` of the seed areas its trainer grows from the same volumes' scribbles."""
    from lib.scribbles.convention import BACKGROUND_CLASS, NO_SEED, ScribbleConvention

    row = row_json(work, seed)
    convention = ScribbleConvention(row["labels"])
    truth_dir = os.path.join(os.path.dirname(os.path.normpath(work)), "data", "groundtruth")
    hit, labelled, total = (np.zeros(convention.num_classes) for _ in range(3))
    wrong_foreground = wrong_off_strokes = 0
    maps = sorted(glob.glob(os.path.join(work, "studies", "labels", "can_em", "*.nii.gz")))
    grow = seed_area_grower(work, row) if seed_areas else None
    for path in maps:
        scribbles = nib.load(os.path.join(work, "studies", "labels", "final", os.path.basename(path)))
        scribbles = np.asarray(scribbles.dataobj)
        if grow:
            image = nib.load(os.path.join(work, "studies", os.path.basename(path)))
            label = grow(np.asarray(image.dataobj, dtype=np.float32), scribbles, image)
        else:
            label = np.asarray(nib.load(path).dataobj).astype(np.int64)
        index, annotated = convention.targets(label)
        truth = np.asarray(nib.load(os.path.join(truth_dir, os.path.basename(path))).dataobj)
        for k in range(convention.num_classes):
            mine = annotated & (index == k)
            hit[k] += np.sum(mine & (truth == k))
            labelled[k] += mine.sum()
            total[k] += np.sum(truth == k)
        wrong = annotated & (index != BACKGROUND_CLASS) & (index != truth)
        seeds = convention.seeds(scribbles)
        stroked = ((seeds != NO_SEED) & (seeds != BACKGROUND_CLASS)).any(axis=(0, 1))
        wrong_foreground += int(wrong.sum())
        wrong_off_strokes += int(wrong[..., ~stroked].sum())
    names = convention.class_names
    name = row["recipe"] + (f", seed {seed}" if seed else "") + (": seed areas" if seed_areas else "")
    return {
        "row": name,
        "volumes": len(maps),
        "precision": dict(zip(names, (hit / np.maximum(labelled, 1)).round(3).tolist())),
        "coverage": dict(zip(names, (hit / np.maximum(total, 1)).round(3).tolist())),
        "wrong_foreground_off_stroked_slices": round(wrong_off_strokes / max(wrong_foreground, 1), 3),
    }


def seed_area_grower(work, row):
    """``grow(image, scribbles, nifti) -> scribble map``: the row's seed areas (its own trainer's
    steps from scribbles to seed areas: tau, beta, walk, outer slices) at the image's grid."""
    from main import ScribbleSegApp
    from monai.transforms import Compose
    from monailabel.interfaces.utils.app import clear_cache

    clear_cache()
    app = ScribbleSegApp(
        os.path.join(work, "app"), os.path.join(work, "studies"), {"models": row["base_recipe"], **row["conf"]}
    )
    trainer = app._trainers[row["base_recipe"]]

    def grow(image, scribbles, nifti):
        steps = Compose(trainer.seed_area_transforms({"target_spacing": list(nifti.header.get_zooms()[:3])}))
        return np.asarray(steps({"image": image[None], "label": scribbles[None]})["label"][0])

    return grow


def report(rows):
    """The markdown table of every row scored so far (rows re-scored replace their earlier entry)."""
    names = list(rows[0]["precision"])
    lines = [
        "# can_em: relabelled training maps against the dense truth",
        "",
        "Command: `python benchmarks/relabelled_maps.py <can_em accuracy row workdirs>` (adds or replaces "
        "those rows; the others are kept)  ",
        "Data: the maps of each row's last E step (datastore tag `can_em`) on its training volumes; pooled.  ",
        "Off strokes: of the voxels wrongly labelled foreground, the share on slices holding no foreground stroke "
        "(not recorded for the earliest rows: -).",
        "",
        "| row | volumes | "
        + " | ".join(f"precision {n}" for n in names)
        + " | "
        + " | ".join(f"coverage {n}" for n in names)
        + " | off strokes |",
        "|---|---|" + "---|" * (2 * len(names) + 1),
    ]
    for r in rows:
        lines.append(
            f"| `{r['row']}` | {r['volumes']} | "
            + " | ".join(f"{v:.3f}" for v in r["precision"].values())
            + " | "
            + " | ".join(f"{v:.3f}" for v in r["coverage"].values())
            + f" | {r.get('wrong_foreground_off_stroked_slices', '-')} |"
        )
    return lines


if __name__ == "__main__":
    main()
