"""Connected-component post-processing of the infer task, side by side on the weights of earlier
accuracy rows: ``largest_component=true`` (the largest component of each class, MONAI's
``KeepLargestConnectedComponent``; the default) vs ``object`` (the largest foreground object,
then the largest component of each class inside it) vs ``myocardium`` (the largest myocardium,
then of every other class the component bordering it most), :mod:`lib.transforms.components`.

Each argument is the workdir of one row of ``benchmarks/accuracy.py`` (``<workdir>/<row>/app`` with
its trained weights and ``<workdir>/data`` with the phantoms); the row's recipe and conf are read
from its committed JSON in ``results/accuracy/``; the ``run`` column names ``<workdir>``, so several
trainings of one row (the same command in other workdirs) are told apart. The same 8 held-out test phantoms, scored as
``accuracy.py`` scores them, and fresh phantoms (``--fresh-seeds``: 8 each, never trained on);
only the post-processing differs (the ``largest_component`` request parameter of one server app).

Which data a rule was designed on matters: ``object`` was written after looking at the test-set
failures, ``myocardium`` after looking at the test set and the seed-300 phantoms; the seed-400
phantoms were generated after both and are the held-out judge of the Scribble2D5 rows. For the 2D
rows (``exmod``, ``zscribbleseg``; ``--name components_2d``) the anchored rule was considered after
their test-set failures were seen; seeds 400 and 500 judge it there.

    python benchmarks/components.py /work/runs/nolpm/scribble2d5_w_o_LPM ... --fresh-seeds 300 400
    python benchmarks/components.py <exmod / zscribbleseg row workdirs> --fresh-seeds 400 500 --name components_2d

Writes ``benchmarks/results/<name>.md`` (and ``.json``; default name ``components``).
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

MODES = ("true", "object", "myocardium")
CLASSES = ("lv", "myocardium", "rv")


def row_json(work, seed=0):
    """The committed accuracy row (JSON) that the workdir ``work`` trained, at training seed ``seed``."""
    from accuracy import results_dir

    path = os.path.join(results_dir(seed), os.path.basename(os.path.normpath(work)) + ".json")
    if not os.path.exists(path):
        raise SystemExit(f"no accuracy row for workdir {work} ({path})")
    with open(path) as f:
        return json.load(f)


def score(work, row, fresh=None):
    """Dice per mode: ``{mode: (volumes, classes)}``."""
    from main import ScribbleSegApp
    from monailabel.interfaces.utils.app import clear_cache

    from lib.metrics import evaluate
    from lib.scribbles.convention import ScribbleConvention

    data = fresh["root"] if fresh else os.path.join(os.path.dirname(os.path.normpath(work)), "data")
    convention = ScribbleConvention(row["labels"])
    model = row["base_recipe"]
    clear_cache()
    app = ScribbleSegApp(
        os.path.join(work, "app"),
        os.path.join(fresh["root"], "studies") if fresh else os.path.join(work, "studies"),
        {"models": model, **row["conf"]},
    )
    dice = {mode: [] for mode in MODES}
    for case in fresh["cases"] if fresh else sorted(row["per_case"]):
        truth = nib.load(os.path.join(data, "groundtruth", f"{case}.nii.gz"))
        for mode in MODES:
            res = app.infer({"model": model, "image": case, "device": "cpu", "largest_component": mode})
            pred = np.asarray(nib.load(res["file"]).dataobj)
            os.unlink(res["file"])
            e = evaluate(pred, np.asarray(truth.dataobj), convention, truth.header.get_zooms()[:3])
            dice[mode].append([e[k]["dice"] for k in CLASSES])
    return {mode: np.asarray(d) for mode, d in dice.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--fresh", type=int, default=8, help="fresh phantoms per seed (0: none)")
    parser.add_argument("--fresh-seeds", type=int, nargs="*", default=[300, 400])
    parser.add_argument("--name", default="components", help="results file name (components.md / .json)")
    args = parser.parse_args()
    from lib.datasets.sample import build_studies

    sets = [("test", None)]
    for seed in args.fresh_seeds if args.fresh else []:
        root = tempfile.mkdtemp(prefix=f"components_{seed}_")
        manifest = build_studies(root, "phantoms", n=args.fresh, scribbled=0, seed=seed)
        sets.append((f"fresh {seed}", {"root": root, "cases": sorted(manifest["cases"])}))
    rows, lines = (
        [],
        [
            "# Connected components at inference: per class vs per object vs anchored on the myocardium",
            "",
            "Command: `python benchmarks/components.py <accuracy row workdirs> "
            f"--fresh {args.fresh} --fresh-seeds {' '.join(map(str, args.fresh_seeds))}"
            + (f" --name {args.name}" if args.name != "components" else "")
            + "`  ",
            f"Machine: {machine()}  ",
            "Data: each row's own trained weights (`results/accuracy/`), scored on the accuracy benchmark's "
            f"8 held-out test phantoms (`test`) and on {args.fresh} fresh phantoms per seed (`fresh <seed>`, "
            "never trained on; which of them a rule's design saw: the module docstring); mean Dice over the "
            "volumes, RV lost = RV Dice < 0.05.",
            "",
            "| row | run | data | mode | Dice lv | Dice myocardium | Dice rv | Dice mean | RV lost |",
            "|---|---|---|---|---|---|---|---|---|",
        ],
    )
    for work in args.workdirs:
        row = row_json(work)
        run = os.path.basename(os.path.dirname(os.path.normpath(work)))  # several trainings of one row: their workdirs
        for data, fresh in sets:
            for mode, d in score(work, row, fresh).items():
                r = {
                    "row": row["recipe"],
                    "run": run,
                    "trained_at": row.get("trained_at"),
                    "data": data,
                    "mode": mode,
                    "dice": dict(zip(CLASSES, d.mean(0).round(3).tolist())),
                    "mean": round(float(d.mean()), 3),
                    "rv_lost": int((d[:, 2] < 0.05).sum()),
                }
                rows.append(r)
                lines.append(
                    f"| `{r['row']}` | {run} | {data} | {mode} | "
                    + " | ".join(f"{v:.3f}" for v in r["dice"].values())
                    + f" | {r['mean']:.3f} | {r['rv_lost']} |"
                )
                print(lines[-1], flush=True)
    with open(os.path.join(RESULTS, f"{args.name}.json"), "w") as f:
        json.dump({"machine": machine(), "rows": rows}, f, indent=1)
    with open(os.path.join(RESULTS, f"{args.name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
