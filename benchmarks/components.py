"""Connected-component post-processing of the infer task, side by side on the weights of earlier
accuracy rows: ``largest_component=true`` (the largest component of each class, MONAI's
``KeepLargestConnectedComponent``; the default) vs ``object`` (the largest foreground object,
then the largest component of each class inside it, :mod:`lib.transforms.components`).

Each argument is the workdir of one row of ``benchmarks/accuracy.py`` (``<workdir>/<row>/app`` with
its trained weights and ``<workdir>/data`` with the phantoms); the row's recipe and conf are read
from its committed JSON in ``results/accuracy/``. The same 8 held-out test phantoms, scored as
``accuracy.py`` scores them; only the post-processing differs.

    python benchmarks/components.py /work/runs/nolpm/scribble2d5_w_o_LPM ...

Writes ``benchmarks/results/components.md`` (and ``.json``).
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, machine  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

MODES = ("true", "object")
CLASSES = ("lv", "myocardium", "rv")


def row_json(work):
    path = os.path.join(RESULTS, "accuracy", os.path.basename(os.path.normpath(work)) + ".json")
    if not os.path.exists(path):
        raise SystemExit(f"no accuracy row for workdir {work} ({path})")
    with open(path) as f:
        return json.load(f)


def score(work, row, mode, fresh=None):
    from main import ScribbleSegApp
    from monailabel.interfaces.utils.app import clear_cache

    from lib.metrics import evaluate
    from lib.scribbles.convention import ScribbleConvention

    data = fresh["root"] if fresh else os.path.join(os.path.dirname(os.path.normpath(work)), "data")
    convention = ScribbleConvention(row["labels"])
    model = row["base_recipe"]
    clear_cache()
    app = ScribbleSegApp(os.path.join(work, "app"), os.path.join(fresh["root"], "studies") if fresh
                         else os.path.join(work, "studies"), {"models": model, **row["conf"], "largest_component": mode})
    dice = []
    for case in (fresh["cases"] if fresh else sorted(row["per_case"])):
        truth = nib.load(os.path.join(data, "groundtruth", f"{case}.nii.gz"))
        res = app.infer({"model": model, "image": case, "device": "cpu"})
        pred = np.asarray(nib.load(res["file"]).dataobj)
        os.unlink(res["file"])
        e = evaluate(pred, np.asarray(truth.dataobj), convention, truth.header.get_zooms()[:3])
        dice.append([e[k]["dice"] for k in CLASSES])
    return np.asarray(dice)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--fresh", type=int, default=8, help="also score on this many fresh phantoms (0: none)")
    parser.add_argument("--fresh-seed", type=int, default=300)
    args = parser.parse_args()
    from lib.datasets.sample import build_studies

    fresh = None
    if args.fresh:
        root = tempfile.mkdtemp(prefix="components_")
        manifest = build_studies(root, "phantoms", n=args.fresh, scribbled=0, seed=args.fresh_seed)
        fresh = {"root": root, "cases": sorted(manifest["cases"])}
    rows, lines = [], ["# Connected components at inference: per class vs per object", "",
                       "Command: `python benchmarks/components.py <accuracy row workdirs> "
                       f"--fresh {args.fresh} --fresh-seed {args.fresh_seed}`  ",
                       f"Machine: {machine()}  ",
                       "Data: each row's own trained weights (`results/accuracy/`), scored on the accuracy benchmark's "
                       "8 held-out test phantoms (`test`: where the failures that led to `object` were seen) and on "
                       f"{args.fresh} fresh phantoms (`fresh`: seeds {args.fresh_seed}.., generated after the rule was "
                       "written); mean Dice over the volumes, RV lost = RV Dice < 0.05.", "",
                       "| row | data | mode | Dice lv | Dice myocardium | Dice rv | Dice mean | RV lost |",
                       "|---|---|---|---|---|---|---|---|"]
    for work in args.workdirs:
        row = row_json(work)
        for data, mode in [(d, m) for d in (["test", "fresh"] if fresh else ["test"]) for m in MODES]:
            d = score(work, row, mode, fresh if data == "fresh" else None)
            r = {"row": row["recipe"], "trained_at": row.get("trained_at"), "data": data, "mode": mode,
                 "dice": dict(zip(CLASSES, d.mean(0).round(3).tolist())), "mean": round(float(d.mean()), 3),
                 "rv_lost": int((d[:, 2] < 0.05).sum())}
            rows.append(r)
            lines.append(f"| `{r['row']}` | {data} | {mode} | " + " | ".join(f"{v:.3f}" for v in r["dice"].values())
                         + f" | {r['mean']:.3f} | {r['rv_lost']} |")
            print(lines[-1], flush=True)
    with open(os.path.join(RESULTS, "components.json"), "w") as f:
        json.dump({"machine": machine(), "rows": rows}, f, indent=1)
    with open(os.path.join(RESULTS, "components.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
