"""Every training recipe on real CT and MR volumes scribbled the way radiologists scribble.

Question: a radiologist scribbles a real volume on a few axial slices and asks the server for dense
labels; how close does each recipe get to ``full``, the same network trained on the dense truth?

Data: the development set (:mod:`lib.datasets.development`, 21 structures on 7 real volumes). For
each volume, one studies folder served by the app with that volume's labels (its dataset conf):

* scribble recipes (``pce``, ``scribble2d5``, ``can_em``, ``exmod``, ``zscribbleseg``) train on
  strokes of :func:`lib.scribbles.simulate.slicer_protocol` -- an interior stroke of each structure
  and two background arcs 3-8 mm outside it -- on 3 axial slices per structure (``3 slices``) or on
  every slice that shows a structure (``every slice``), saved as tag ``final`` through the real
  datastore;
* ``weaknet`` trains on 25 surface points clicked evenly over each structure (tag ``points``);
* ``full`` trains on the dense truth (the upper bound; the only row that sees it).

Each recipe is trained through its real MONAI Label train task (in-process, one volume, no
validation: checkpoint = last weights) with the same seed and budget, then its infer task
segments the same volume (the annotation use: dense labels for a scribbled set). The hippocampus
cases also segment the other side's volume (``mr_hippocampus_L`` <-> ``_R``, never trained on):
the held-out use. Dice against the dense truth; each row also as a % of ``full`` on the same case.

    python benchmarks/recipes_real.py [--protocols "3 slices,every slice"] [--cases ct_chest,...]
        [--recipes pce,scribble2d5,can_em,exmod,zscribbleseg,weaknet,full]
        [--epochs 8 --epoch-length 25 --patch 64,64,16]

One JSON per (protocol, case, recipe) under ``benchmarks/results/recipes_real/`` (an existing one
is kept unless ``--force``: rows add up over runs); the report ``recipes_real.md`` and the overlays
``recipes_real_overlays.png`` are regenerated from every JSON present.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from accuracy import NARROW_2D, file_name  # noqa: E402

from common import REPO, RESULTS, machine, make_app, train_request  # noqa: E402
from lib.configs.recipe import UNANCHORED_LARGEST_COMPONENT  # noqa: E402

OUT = os.path.join(RESULTS, "recipes_real")
PROTOCOLS = {"3 slices": 3, "every slice": None}
RECIPES = ("pce", "scribble2d5", "can_em", "exmod", "zscribbleseg", "weaknet", "full")
CONF = {"exmod": NARROW_2D, "zscribbleseg": NARROW_2D}
"""Per-recipe conf: the slice-wise UNets at the widths a CPU affords (as in ``accuracy.py``)."""
HELD_OUT = {"mr_hippocampus_L": "mr_hippocampus_R", "mr_hippocampus_R": "mr_hippocampus_L"}
"""Cases with a second volume of the same anatomy and modality, segmented but never trained on."""
COMPONENTS = {
    "largest component": {"largest_component": "true"},
    "all components": {"largest_component": "false"},
}
"""Inference post-processings scored from the same weights: each class cut to its largest connected
component, and none (every component kept: ribs, discs and other structures in pieces)."""
DEFAULT = next(k for k, v in COMPONENTS.items() if v["largest_component"] == UNANCHORED_LARGEST_COMPONENT)
"""The clean-up the app applies when the dataset conf names no ``anchor_structure`` (as here)."""
PIECES = ("ribs", "intervertebral discs", "vertebral column")
"""Structures made of several pieces, whose Dice the clean-up moves most (largest / all shown)."""
STROKELESS = ("full", "weaknet")
"""Recipes that never see the strokes (dense truth, clicked points): trained once, their rows serve
every protocol."""
POINTS = 25
"""Surface points clicked per structure for ``weaknet``."""


def build_case(root, case, partner, protocol, seed):
    """``root/studies`` (the case scribbled, its partner unlabelled) and ``root/groundtruth``."""
    from lib.conf import write_dataset_conf
    from lib.datasets.sample import save_scribbles, studies_datastore
    from lib.datasets.study import write_case
    from lib.scribbles.convention import ScribbleConvention
    from lib.scribbles.simulate import slicer_protocol
    from lib.scribbles.template import surface_points

    shutil.rmtree(root, ignore_errors=True)
    convention = ScribbleConvention(case.labels)
    for c in [case] + ([partner] if partner else []):
        write_case(root, c.name, c.volume)
    studies = os.path.join(root, "studies")
    write_dataset_conf(studies, {"labels": case.labels})
    datastore = studies_datastore(studies)
    volume = case.volume
    coverage = save_scribbles(datastore, case.name, volume, convention, seed, slicer_protocol(PROTOCOLS[protocol]))
    points = np.zeros(volume.label.shape, np.uint8)
    for name, cls in case.labels.items():
        pts = surface_points(volume.label == cls, volume.spacing, POINTS, seed=seed + cls)
        points[tuple(pts.T)] = cls
    path = os.path.join(root, "points.nii.gz")
    nib.save(nib.Nifti1Image(points, volume.affine), path)
    datastore.save_label(case.name, path, "points", {})
    gt_train = os.path.join(root, "groundtruth_train")  # what `full` may see: the scribbled volume only
    os.makedirs(gt_train)
    shutil.copy(os.path.join(root, "groundtruth", f"{case.name}.nii.gz"), gt_train)
    return convention, coverage, gt_train


def run(case, partner, protocol, recipe, args):
    from lib.metrics import evaluate

    work = os.path.join(args.workdir, row_name(protocol, case.name, recipe, args.variant)[:-5])
    root = os.path.join(work, "data")
    convention, coverage, gt_train = build_case(root, case, partner, protocol, args.seed)
    conf = {**CONF.get(recipe, {}), **json.loads(args.conf)}
    app = make_app(work, os.path.join(root, "studies"), {"models": recipe, **conf})
    patch = [int(v) for v in args.patch.split(",")]
    request = train_request(recipe, args, val_split=0.0, patch_size=patch)
    if recipe == "full":
        request["gt_dir"] = gt_train
    t = time.time()
    app.train(request)
    train_s = time.time() - t
    scores, overlays = {mode: {} for mode in COMPONENTS}, {}
    for c, mode in [(c, m) for c in [case] + ([partner] if partner else []) for m in COMPONENTS]:
        res = app.infer({"model": recipe, "image": c.name, "device": args.device, **COMPONENTS[mode]})
        pred = np.asarray(nib.load(res["file"]).dataobj)
        os.unlink(res["file"])
        scores[mode][c.name] = evaluate(pred, c.volume.label, convention, c.volume.spacing)
        if c is case:
            z = int(np.argmax((c.volume.label > 0).sum(axis=(0, 1))))
            overlays[mode] = {"z": z, "pred": pred[..., z].astype(np.uint8).tolist()}
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "protocol": protocol,
        "case": case.name,
        "held_out": partner.name if partner else None,
        "recipe": recipe,
        "variant": args.variant or None,
        "conf": conf,
        "machine": machine(),
        "seed": args.seed,
        "budget": {"epochs": args.epochs, "epoch_length": args.epoch_length, "batch": args.batch},
        "patch_size": request["patch_size"],
        "train_seconds": round(train_s, 1),
        "coverage": {k: round(float(v), 4) for k, v in coverage.items()},
        "kinds": case.kinds,
        "scores_by_components": scores,
        "overlays": overlays,
    }


# ------------------------------------------------------------------------------------------------
# report
def case_dice(row, case=None, mode=DEFAULT):
    """Mean Dice over the structures of ``row`` on ``case`` (default: the trained one) after the
    clean-up ``mode`` of :data:`COMPONENTS`."""
    s = row["scores_by_components"][mode][case or row["case"]]
    return float(np.mean([s[n]["dice"] for n in row["kinds"]]))


def row_name(protocol, case, recipe, variant=""):
    """JSON file name of one row; a variant (a conf change) gets its own."""
    return file_name(f"{protocol} {case} {recipe}" + (f" {variant}" if variant else ""))


def structure_dice(row, name, mode=DEFAULT):
    """Dice of structure ``name`` on the trained volume after the clean-up ``mode``."""
    return row["scores_by_components"][mode][row["case"]][name]["dice"]


def cleanup_summary(rows):
    """One line: over every (row, structure), how often keeping all components beats the largest."""
    pairs = [
        (structure_dice(r, n, "largest component"), structure_dice(r, n, "all components"))
        for r in rows
        for n in r["kinds"]
    ]
    better = sum(b > a + 0.1 for a, b in pairs)
    worse = sum(b < a - 0.1 for a, b in pairs)
    lost = sum(a < 0.01 <= 0.1 <= b for a, b in pairs)
    return (
        f"Over {len(pairs)} (recipe, structure) pairs, keeping all components scores > 0.1 higher in {better}"
        f" and > 0.1 lower in {worse}; the largest-component cut loses {lost} structures outright (Dice"
        " < 0.01 where all components reach >= 0.1)."
    )


def load_rows():
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(OUT, "*.json")))]


def report(all_rows):
    from lib.datasets.development import CASES

    rows = [r for r in all_rows if not r.get("variant")]
    lines = [
        "# Every recipe on real volumes (`benchmarks/recipes_real.py`)",
        "",
        "Each recipe trained on one real development volume (in-process train task, no validation, the",
        "same seed and budget), Dice against the dense truth of the same volume, mean over its",
        "structures; `% full` is the recipe's mean over cases as a fraction of `full`'s mean on the",
        "same cases. Scribble recipes see strokes of the Slicer protocol, `weaknet` 25 clicked surface",
        "points per structure, `full` the dense truth. Neither of the last two sees the strokes, so",
        "they are trained once and their rows repeat under every protocol.",
        "",
    ]
    if rows:
        budgets = {tuple(r["budget"].values()) for r in rows}
        lines += [
            f"Machine: {rows[0]['machine']}. Budget (epochs x iterations x batch): "
            + ", ".join(" x ".join(map(str, b)) for b in sorted(budgets))
            + f". Seed {rows[0]['seed']}.",
            "",
        ]
    for protocol in PROTOCOLS:
        got = {(r["case"], r["recipe"]): r for r in rows if r["protocol"] == protocol}
        if not got:
            continue
        for r in rows:  # the same training whatever the protocol
            if r["recipe"] in STROKELESS and any(k[0] == r["case"] for k in got):
                got.setdefault((r["case"], r["recipe"]), r)
        names = [c for c in CASES if any(k[0] == c for k in got)]
        lines += [f"## {protocol}", "", "| recipe | " + " | ".join(names) + " | mean | % full | train (min) |"]
        lines.append("|---" * (len(names) + 4) + "|")
        for recipe in RECIPES:
            mine = [got.get((c, recipe)) for c in names]
            if not any(mine):
                continue
            cells = [f"{case_dice(r):.3f}" if r else "" for r in mine]
            done = [c for c, r in zip(names, mine) if r]
            mean = np.mean([case_dice(got[(c, recipe)]) for c in done])
            full = [case_dice(got[(c, "full")]) for c in done if (c, "full") in got]
            pct = f"{100 * mean / np.mean(full):.0f} %" if len(full) == len(done) else ""
            minutes = np.mean([got[(c, recipe)]["train_seconds"] for c in done]) / 60
            lines.append(f"| `{recipe}` | " + " | ".join(cells) + f" | {mean:.3f} | {pct} | {minutes:.1f} |")
        held = [r for r in got.values() if r["held_out"]]
        if held:
            lines += ["", "Held out (trained on one hippocampus, segmenting the other side's volume):", ""]
            lines += ["| recipe | " + " | ".join(f"{r} -> {HELD_OUT[r]}" for r in sorted(HELD_OUT)) + " |"]
            lines.append("|---" * (len(HELD_OUT) + 1) + "|")
            for recipe in RECIPES:
                cells = [got.get((c, recipe)) for c in sorted(HELD_OUT)]
                if any(cells):
                    lines.append(
                        f"| `{recipe}` | "
                        + " | ".join(f"{case_dice(r, r['held_out']):.3f}" if r else "" for r in cells)
                        + " |"
                    )
        lines += [
            "",
            "Connected-component clean-up (same weights, Dice on the trained volume, mean over cases):",
            "",
            "| recipe | " + " | ".join(f"mean, {m}" for m in COMPONENTS),
        ]
        lines[-1] += " | " + " | ".join(
            f"{n} (largest / all)" for n in PIECES if any(n in r["kinds"] for r in got.values())
        )
        lines[-1] += " |"
        lines.append("|---" * (lines[-1].count("|") - 1) + "|")
        for recipe in RECIPES:
            mine = [r for k, r in got.items() if k[1] == recipe]
            if not mine:
                continue
            cells = [f"{np.mean([case_dice(r, mode=m) for r in mine]):.3f}" for m in COMPONENTS]
            for n in PIECES:
                if any(n in r["kinds"] for r in got.values()):
                    with_n = [r for r in mine if n in r["kinds"]]
                    cells.append(" / ".join(f"{structure_dice(r, n, m):.2f}" for r in with_n for m in COMPONENTS))
            lines.append(f"| `{recipe}` | " + " | ".join(cells) + " |")
        lines += ["", cleanup_summary([r for r in got.values() if r["protocol"] == protocol])]  # not the borrowed
        lines += ["", "Per structure (Dice on the trained volume):", ""]
        structures = [(c, n) for c in names for n in next(r for k, r in got.items() if k[0] == c)["kinds"]]
        lines += ["| recipe | " + " | ".join(f"{c}: {n}" for c, n in structures) + " |"]
        lines.append("|---" * (len(structures) + 1) + "|")
        for recipe in RECIPES:
            if any((c, recipe) in got for c in names):
                lines.append(
                    f"| `{recipe}` | "
                    + " | ".join(
                        f"{structure_dice(got[(c, recipe)], n):.2f}" if (c, recipe) in got else ""
                        for c, n in structures
                    )
                    + " |"
                )
        lines.append("")
    lines += variant_table(all_rows)
    lines += [
        'Command: `python benchmarks/recipes_real.py --protocols "3 slices,every slice" --device cpu` '
        "(rows add up over runs; see `benchmarks/README.md` for the reading).",
        "",
    ]
    return lines


def variant_table(rows):
    """Conf variants against the same recipe at its defaults: same protocol, case, seed, budget."""
    from lib.datasets.development import CASES

    plain = {(r["protocol"], r["case"], r["recipe"]): r for r in rows if not r.get("variant")}
    variants = sorted({(r["protocol"], r["recipe"], r["variant"]) for r in rows if r.get("variant")})
    if not variants:
        return []
    names = [c for c in CASES if any(r["case"] == c and r.get("variant") for r in rows)]
    lines = [
        "## Conf variants",
        "",
        "Mean Dice on the trained volume (default clean-up); each variant follows its recipe at the",
        "defaults; `paired diff` is the mean change over the cases both ran, and how many went up:",
        "",
        "| protocol | recipe | conf | " + " | ".join(names) + " | mean | paired diff |",
        "|---" * (len(names) + 5) + "|",
    ]

    def line(protocol, recipe, label, got, diff=""):
        cells = [f"{case_dice(got[c]):.3f}" if c in got else "" for c in names]
        mean = f"{np.mean([case_dice(r) for r in got.values()]):.3f}" if got else ""
        return f"| {protocol} | `{recipe}` | {label} | " + " | ".join(cells) + f" | {mean} | {diff} |"

    for protocol, recipe in sorted({(p, r) for p, r, _ in variants}):
        base = {c: plain[(protocol, c, recipe)] for c in names if (protocol, c, recipe) in plain}
        lines.append(line(protocol, recipe, "defaults", base))
        for variant in [v for p, r, v in variants if (p, r) == (protocol, recipe)]:
            key = (protocol, recipe, variant)
            mine = {r["case"]: r for r in rows if (r["protocol"], r["recipe"], r.get("variant")) == key}
            d = [case_dice(mine[c]) - case_dice(base[c]) for c in mine if c in base]
            diff = f"{np.mean(d):+.3f} ({sum(x > 0 for x in d)}/{len(d)} up)" if d else ""
            conf = json.dumps(next(iter(mine.values()))["conf"])
            lines.append(line(protocol, recipe, f"`{conf}`", mine, diff))
    return lines + [""]


def overlay_mode(row):
    """The clean-up whose stored slice of ``row`` is drawn: the default where it was kept."""
    return DEFAULT if DEFAULT in row["overlays"] else next(iter(row["overlays"]))


def overlay(row):
    """The stored slice of ``row``'s prediction after :func:`overlay_mode`."""
    return row["overlays"][overlay_mode(row)]


def overlay_png(rows, cases, path):
    """One row per case (its slice with the most structure), 3-slice protocol: image, truth, recipes."""
    from PIL import Image, ImageDraw

    got = {(r["case"], r["recipe"]): r for r in rows if r["protocol"] == "3 slices" and not r.get("variant")}
    recipes = [r for r in RECIPES if any(k[1] == r for k in got)]
    tiles = []
    for case in cases:
        if not any((case.name, r) in got for r in recipes):
            continue
        z = next(overlay(got[(case.name, r)])["z"] for r in recipes if (case.name, r) in got)
        img = case.volume.image[..., z].astype(np.float32)
        lo, hi = np.percentile(img, (0.5, 99.5))
        gray = np.repeat((255 * np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)).astype(np.uint8)[..., None], 3, -1)
        palette = (np.random.default_rng(0).uniform(60, 255, (16, 3))).astype(np.uint8)

        def blend(mask):
            out = gray.copy()
            m = mask > 0
            out[m] = (0.45 * gray[m] + 0.55 * palette[mask[m]]).astype(np.uint8)
            return out

        maps = [case.volume.label[..., z]] + [
            np.asarray(overlay(got[(case.name, r)])["pred"]) if (case.name, r) in got else np.zeros_like(img, int)
            for r in recipes
        ]
        tile = np.concatenate([gray] + [blend(m) for m in maps], axis=1)
        tile = np.asarray(Image.fromarray(tile).resize((tile.shape[1] * 128 // tile.shape[0], 128), Image.NEAREST))
        tiles.append(tile)
    if not tiles:
        return None
    modes = {overlay_mode(r) for r in got.values()}
    width = max(t.shape[1] for t in tiles)
    grid = np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0))) for t in tiles], axis=0)
    im = Image.fromarray(np.pad(grid, ((14, 0), (0, 0), (0, 0))))
    draw = ImageDraw.Draw(im)
    draw.text(
        (4, 1),
        " | ".join(["image", "truth"] + recipes)
        + f"   (one row per case; 3 slices; clean-up: {', '.join(sorted(modes))})",
        fill=(255, 255, 0),
    )
    im.save(path)
    return path


def main():
    from lib.datasets.development import CASES, development_set

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", default="3 slices")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--epoch-length", type=int, default=25)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", default="64,64,16", help="training patch (H,W,D): the development volumes are small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", default="/tmp/recipes_real")
    parser.add_argument("--conf", default="{}", help="JSON conf added to every row's app (with --variant)")
    parser.add_argument("--variant", default="", help="name of the --conf change; its rows get their own JSONs")
    parser.add_argument("--cache-dir", default=os.path.join(REPO, ".cache"))
    parser.add_argument("--force", action="store_true", help="retrain rows that have a JSON already")
    parser.add_argument("--keep", action="store_true", help="keep each row's app, model and studies")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    all_cases = {c.name: c for c in development_set(cache_dir=args.cache_dir)}
    os.makedirs(OUT, exist_ok=True)
    if not args.report_only:
        for protocol in [p.strip() for p in args.protocols.split(",")]:
            if protocol not in PROTOCOLS:
                raise SystemExit(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
            for name in args.cases.split(","):
                case = all_cases[name]
                partner = all_cases.get(HELD_OUT.get(name, ""))
                for recipe in args.recipes.split(","):
                    out = os.path.join(OUT, row_name(protocol, name, recipe, args.variant))
                    if os.path.exists(out) and not args.force:
                        continue
                    row = run(case, partner, protocol, recipe, args)
                    with open(out, "w") as f:
                        json.dump(row, f)
                    print(f"{protocol} | {name} | {recipe}: {case_dice(row):.3f} ({row['train_seconds']:.0f} s)")
    rows = load_rows()
    png = overlay_png(rows, list(all_cases.values()), os.path.join(RESULTS, "recipes_real_overlays.png"))
    lines = report(rows)
    if png:
        lines += ["![overlays](recipes_real_overlays.png)", ""]
    with open(os.path.join(RESULTS, "recipes_real.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
