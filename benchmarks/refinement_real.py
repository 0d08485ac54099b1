"""Scribble refinement on real CT and MR volumes, through the real server, as Slicer users scribble.

Question: when a radiologist draws a few strokes on a few axial slices of a real volume, does
``crf`` / ``random_walk`` give the structure back in 3D -- better than MONAI Label's histogram graph
cut and than a plain random walker -- and fast enough to stay interactive?

Data: the development set (:mod:`lib.datasets.development`, 21 structures on 7 real volumes, dense
truth never sent to the server). Strokes: :func:`lib.scribbles.simulate.slicer_protocol` -- an
interior stroke of the structure and two background arcs 3-8 mm outside it, on 1, 3 or 5 axial
slices spread over the structure, or on every slice.

Situations (``crf`` and ``random_walk`` through ``monailabel start_server`` and
``MONAILabelClient.infer(label_in=...)``, one server per volume started with that volume's labels):

* ``binary`` -- Slicer's scribbles panel, no prior: a segmentation node holding
  ``foreground_scribbles`` / ``background_scribbles``, ``selected_label_name`` the structure. Against
  MONAI Label's ``HistogramBasedGraphCut`` and ``skimage.segmentation.random_walker`` (both
  in-process, same strokes: the graph cut's infer task imports torchvision, which this image keeps
  out);
* ``multiclass`` -- one scribble map with every structure of the volume (our mode only);
* ``corrective`` -- the segment already holds a degraded truth (the way a model errs: 3 mm too
  small, 3 mm too big, a slab of 25 % of its slices missed, a false blob beside it) and the user
  adds strokes on the 1-3 slices where it is most wrong (a background stroke across the blob);
* ``latency`` -- CTChest4 resampled to 128 x 128 x 34, 256 x 256 x 68 and 512 x 512 x 102, right lung,
  3-slice strokes, round trip through the server while a training runs on it, against the graph
  cut in-process.

Dice against the dense truth; seconds are client round trips (upload, solve, download) for the
server methods and in-process calls for the others.

    python benchmarks/refinement_real.py [--seeds 0] [--cases ct_chest,...] [--skip-latency]
    python benchmarks/refinement_real.py --latency-only     # the committed accuracy rows kept

Writes ``benchmarks/results/refinement_real.{md,json}`` and overlays ``refinement_real_*.png``.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from refinement import dice, graphcut, plain_random_walker, plain_random_walker_labels  # noqa: E402
from scipy import ndimage  # noqa: E402

from common import APP_DIR, REPO, RESULTS, machine  # noqa: E402

PROTOCOLS = {"1 slice": 1, "3 slices": 3, "5 slices": 5, "every slice": None}
DEGRADATIONS = ("eroded 3 mm", "dilated 3 mm", "missed slab", "false blob")
METHODS = ("crf", "random_walk")
SLICER_IDS = {"segment": 1, "background_scribbles": 2, "foreground_scribbles": 3}


# ------------------------------------------------------------------------------------------------
# strokes and priors
def strokes(truth, spacing, slices, seed):
    """Binary seeds (1 foreground, 0 background, NO_SEED) of a Slicer user's strokes on ``truth``."""
    from lib.scribbles.convention import ScribbleConvention
    from lib.scribbles.simulate import simulate_scribbles, slicer_protocol

    conv = ScribbleConvention({"structure": 1})
    return conv.seeds(
        simulate_scribbles(truth.astype(np.uint8), spacing, conv, seed=seed, config=slicer_protocol(slices))
    )


def degrade(truth, spacing, how, rng):
    """The truth as a model would get it wrong (see the module doc)."""
    reach = max(3.0, 1.01 * min(spacing[:2]))  # at least one in-plane voxel on coarse grids
    if how == "eroded 3 mm":
        return ndimage.distance_transform_edt(truth, sampling=spacing) > reach
    if how == "dilated 3 mm":
        return ndimage.distance_transform_edt(~truth, sampling=spacing) <= reach
    zs = np.flatnonzero(truth.any(axis=(0, 1)))
    if how == "missed slab":
        # a quarter of the slices that hold the structure, consecutive among them (a structure in
        # pieces along z, such as the discs, loses some of its pieces, never only the gaps between)
        n = max(1, int(round(0.25 * zs.size)))
        start = int(rng.integers(0, max(1, zs.size - n)))
        out = truth.copy()
        out[:, :, zs[start : start + n]] = False
        return out
    # false blob: a ball of the structure's equivalent radius (at least 5 mm), 5-15 mm outside it
    radius = max(5.0, 0.5 * (3.0 * truth.sum() * np.prod(spacing) / (4.0 * np.pi)) ** (1.0 / 3.0))
    outside = ndimage.distance_transform_edt(~truth, sampling=spacing)
    candidates = np.argwhere((outside > radius + 5.0) & (outside < radius + 15.0))
    centre = candidates[rng.integers(len(candidates))] if len(candidates) else np.argwhere(~truth)[0]
    grid = np.ogrid[tuple(slice(0, n) for n in truth.shape)]
    ball = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= radius**2
    return truth | ball


def corrective_strokes(truth, prior, spacing, seed, how):
    """Strokes on the 1-3 scribbled slices where ``prior`` is most wrong (every-slice strokes kept
    there), plus a background line across a false blob's central slice."""
    from lib.scribbles.convention import NO_SEED

    full = strokes(truth, spacing, None, seed)
    wrong = np.where((full != NO_SEED).any(axis=(0, 1)), (truth != prior).sum(axis=(0, 1)), 0)
    worst = [int(z) for z in np.argsort(-wrong)[:3] if wrong[z] > 0]
    keep = np.zeros(truth.shape[2], bool)
    keep[worst] = True
    seeds = np.where(keep[None, None, :], full, NO_SEED)
    if how == "false blob":
        blob = prior & ~truth
        z = int(np.argmax(blob.sum(axis=(0, 1))))
        rows = np.flatnonzero(blob[:, :, z].any(axis=1))
        r = rows[len(rows) // 2]
        seeds[r, blob[r, :, z], z] = 0
    return seeds


def slicer_node(seeds, segment=None):
    """A Slicer segmentation node as the scribbles panel exports it."""
    from lib.scribbles.convention import NO_SEED

    node = np.zeros(seeds.shape, np.uint8)
    if segment is not None:
        node[segment] = SLICER_IDS["segment"]
    node[seeds == 0] = SLICER_IDS["background_scribbles"]
    node[(seeds != NO_SEED) & (seeds != 0)] = SLICER_IDS["foreground_scribbles"]
    return node


# ------------------------------------------------------------------------------------------------
# the server
class Served:
    """One volume served by the real app, with that volume's labels."""

    def __init__(self, workdir, case_id, volume, labels, conf=None):
        from lib.datasets.study import write_nifti
        from live_server import LiveServer, copy_app

        self.dir = os.path.join(workdir, case_id)
        os.makedirs(self.dir, exist_ok=True)
        self.affine = volume.affine
        self.case_id = case_id
        write_nifti(os.path.join(self.dir, "studies", f"{case_id}.nii.gz"), volume.image, self.affine)
        app = copy_app(os.path.join(self.dir, "app"))
        self.server = LiveServer(
            app,
            os.path.join(self.dir, "studies"),
            conf={"labels": json.dumps(labels), **(conf or {})},
            workdir=self.dir,
        )
        self.client = self.server.client("benchmark")
        self.labels = labels

    def infer(self, method, array, params):
        path = os.path.join(self.dir, "request.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(array, np.uint8), self.affine), path)
        t = time.perf_counter()
        result, reply = self.client.infer(
            method, self.case_id, {"result_extension": ".nii.gz", **params}, label_in=path
        )
        elapsed = time.perf_counter() - t
        out = np.asarray(nib.load(result).dataobj)
        os.remove(result)
        return out, elapsed, reply

    def safe_binary(self, method, name, seeds, segment=None):
        """:meth:`binary`, a refused request recorded (empty mask, its message) instead of raised."""
        from monailabel.client.client import MONAILabelClientException

        try:
            return self.binary(method, name, seeds, segment)
        except MONAILabelClientException as e:
            print(f"    {method} refused: {e.msg}", flush=True)
            return np.zeros(seeds.shape, bool), float("nan"), {"error": str(e.msg)}

    def binary(self, method, name, seeds, segment=None):
        info = [
            {"name": name, "id": SLICER_IDS["segment"]},
            {"name": "background_scribbles", "id": SLICER_IDS["background_scribbles"]},
            {"name": "foreground_scribbles", "id": SLICER_IDS["foreground_scribbles"]},
        ]
        out, elapsed, reply = self.infer(
            method, slicer_node(seeds, segment), {"label_info": info, "selected_label_name": name}
        )
        return out == 1, elapsed, reply

    def stop(self):
        self.server.stop()


# ------------------------------------------------------------------------------------------------
def run_case(case, served, seeds, rows, overlays):
    from lib.scribbles.convention import ScribbleConvention
    from lib.scribbles.simulate import simulate_scribbles, slicer_protocol

    v = case.volume
    for name, value in case.labels.items():
        truth = v.label == value
        for protocol, slices in PROTOCOLS.items():
            for seed in seeds:
                s = strokes(truth, v.spacing, slices, seed)
                key = dict(
                    case=case.name,
                    structure=name,
                    kind=case.kinds[name],
                    protocol=protocol,
                    seed=seed,
                    situation="binary",
                )
                for method in METHODS:
                    mask, sec, _ = served.safe_binary(method, name, s)
                    rows.append({**key, "method": method, "dice": dice(mask, truth), "seconds": sec})
                    if protocol == "3 slices" and seed == seeds[0]:
                        overlays.setdefault((case.name, name), {})[method] = mask
                for method, fn in (
                    ("graphcut", lambda: graphcut(v.image, s == 1, s == 0, v.spacing)),
                    ("random_walker_plain", lambda: plain_random_walker(v.image, s, v.spacing)),
                ):
                    t = time.perf_counter()
                    mask = fn()
                    rows.append(
                        {**key, "method": method, "dice": dice(mask, truth), "seconds": time.perf_counter() - t}
                    )
                    if protocol == "3 slices" and seed == seeds[0]:
                        overlays[(case.name, name)].update({method: mask, "strokes": s, "truth": truth})
        rng = np.random.default_rng(seeds[0])
        for how in DEGRADATIONS:
            prior = degrade(truth, v.spacing, how, rng)
            s = corrective_strokes(truth, prior, v.spacing, seeds[0], how)
            key = dict(
                case=case.name,
                structure=name,
                kind=case.kinds[name],
                protocol=how,
                seed=seeds[0],
                situation="corrective",
            )
            rows.append({**key, "method": "prior", "dice": dice(prior, truth), "seconds": 0.0})
            for method in METHODS:
                mask, sec, _ = served.safe_binary(method, name, s, segment=prior)
                rows.append({**key, "method": method, "dice": dice(mask, truth), "seconds": sec})
        print(f"  {case.name} / {name} done", flush=True)

    # multi-class: one scribble map with every structure of the volume
    conv = ScribbleConvention(case.labels)
    info = [{"name": n, "id": k} for n, k in conv.labels.items()] + [
        {"name": "background", "id": conv.background_scribble_id}
    ]
    for protocol, slices in PROTOCOLS.items():
        for seed in seeds:
            scribbles = simulate_scribbles(v.label, v.spacing, conv, seed=seed, config=slicer_protocol(slices))
            multiclass = {}
            for method in METHODS:
                out, sec, _ = served.infer(method, scribbles, {"label_info": info})
                multiclass[method] = (out, sec)
            t = time.perf_counter()
            walked = plain_random_walker_labels(v.image, conv.seeds(scribbles), v.spacing)
            multiclass["random_walker_plain"] = (walked, time.perf_counter() - t)
            for method, (out, sec) in multiclass.items():
                for name, value in case.labels.items():
                    rows.append(
                        dict(
                            case=case.name,
                            structure=name,
                            kind=case.kinds[name],
                            protocol=protocol,
                            seed=seed,
                            situation="multiclass",
                            method=method,
                            dice=dice(out == value, v.label == value),
                            seconds=sec,
                        )
                    )


def run_latency(workdir, repeats, rows):
    """Right lung of CTChest4 at three grids, through a server that is training beside it."""
    from lib.datasets.development import load_case
    from lib.datasets.study import LabelledVolume, write_nifti

    case = load_case("ct_chest", os.path.join(REPO, ".cache"))
    base = case.volume
    value = case.labels["right lung"]
    for zoom in ((1, 1, 1), (2, 2, 2), (4, 4, 3)):
        # stored as int16 Hounsfield units, as scanners write CT
        image = np.round(ndimage.zoom(base.image.astype(np.float32), zoom, order=1)).astype(np.int16)
        label = ndimage.zoom(base.label, zoom, order=0)
        spacing = tuple(s / z for s, z in zip(base.spacing, zoom))
        volume = LabelledVolume(image=image, label=label, spacing=spacing)
        truth = label == value
        s = strokes(truth, spacing, 3, 0)
        grid = "x".join(map(str, image.shape))
        served = Served(
            workdir,
            f"chest_{grid}",
            volume,
            {"right lung": 1},
            conf={"models": "pce", "unet2d_features": "[8, 16, 32, 64]"},
        )
        try:
            # a training beside the requests: the strokes saved as a label, a long pce training started
            scribbles = np.where(s == 1, 1, np.where(s == 0, 2, 0)).astype(np.uint8)
            lpath = write_nifti(os.path.join(served.dir, "scribbles.nii.gz"), scribbles, volume.affine)
            served.client.save_label(
                served.case_id,
                lpath,
                tag="final",
                params={"label_info": [{"name": "right lung", "idx": 1}, {"name": "background_strokes", "idx": 2}]},
            )
            # as an annotator's session starts: Next Sample (which reads the image ahead), then strokes
            served.client.next_sample("random", {})
            served.client.train_start("pce", {"max_epochs": 1000, "val_split": 0.0})
            time.sleep(5)
            training = bool(served.client.train_status(check_if_running=True))
            # the methods take turns, so that each sees the training in the same phases (it loads and
            # caches its data first, then iterates)
            times, dices = {m: [] for m in METHODS}, {m: [] for m in METHODS}
            for _ in range(repeats):
                for method in METHODS:
                    mask, sec, _ = served.binary(method, "right lung", s)
                    times[method].append(sec)
                    dices[method].append(dice(mask, truth))
            for method in METHODS:
                rows.append(
                    dict(
                        grid=grid,
                        voxels=int(image.size),
                        method=method,
                        training=training,
                        seconds_median=float(np.median(times[method])),
                        # the method's first request (crf's: the session's first stroke)
                        seconds_first=times[method][0],
                        dice=float(np.median(dices[method])),
                        runs=repeats,
                    )
                )
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                mask = graphcut(image, s == 1, s == 0, spacing)
                times.append(time.perf_counter() - t)
            rows.append(
                dict(
                    grid=grid,
                    voxels=int(image.size),
                    method="graphcut",
                    training=training,
                    seconds_median=float(np.median(times)),
                    seconds_first=times[0],
                    dice=dice(mask, truth),
                    runs=repeats,
                )
            )
            try:
                served.client.train_stop()
            except Exception:
                pass
        finally:
            served.stop()
        print(f"  latency {grid} done", flush=True)


# ------------------------------------------------------------------------------------------------
def overlay_path(case, structure):
    return os.path.join(RESULTS, f"refinement_real_{case}_{structure.replace(' ', '_')}.png")


def overlay_png(path, image, parts):
    """Axial slice through the middle stroke: truth (green), result (red), strokes (yellow / blue)."""
    from PIL import Image

    from lib.scribbles.convention import NO_SEED
    from lib.scribbles.prior import normalise_intensity

    s, truth = parts["strokes"], parts["truth"]
    zs = np.flatnonzero((s == 1).any(axis=(0, 1)))
    zs = zs if zs.size else np.flatnonzero(truth.any(axis=(0, 1)))
    z = int(zs[len(zs) // 2])
    gray = (normalise_intensity(image)[:, :, z] * 255).astype(np.uint8)
    tiles = []
    for method in ("crf", "random_walk", "graphcut", "random_walker_plain"):
        rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
        mask = parts[method][:, :, z]
        rgb[mask] = 0.55 * rgb[mask] + 0.45 * np.array([255, 40, 40])
        edge = truth[:, :, z] & ~ndimage.binary_erosion(truth[:, :, z])
        rgb[edge] = [40, 255, 40]
        rgb[s[:, :, z] == 1] = [255, 230, 0]
        rgb[(s[:, :, z] == 0) & (s[:, :, z] != NO_SEED)] = [60, 120, 255]
        tiles.append(np.rot90(rgb.astype(np.uint8)))
    Image.fromarray(np.concatenate(tiles, axis=1)).resize(
        (tiles[0].shape[1] * 4 * 2, tiles[0].shape[0] * 2), Image.NEAREST
    ).save(path)


def cell(results, method, key, digits):
    return f"{results[method][key]:.{digits}f}" if method in results else "n/a"


def summarise(rows, latency, args, pngs, command=None, rows_machine=None):
    """Writes the JSON and the report. ``command`` and ``rows_machine``: what measured ``rows`` when
    it was not this run (``--latency-only`` keeps the committed rows); the latency's own command
    and machine are then written beside them."""
    from collections import defaultdict

    def mean(xs):
        return float(np.mean(xs)) if xs else float("nan")

    by = defaultdict(list)
    for r in rows:
        by[(r["situation"], r["protocol"], r["method"])].append(r)
    summary = {}
    for (situation, protocol, method), rs in by.items():
        kinds = sorted({r["kind"] for r in rs})
        summary.setdefault(situation, {}).setdefault(protocol, {})[method] = {
            "dice_mean": mean([r["dice"] for r in rs]),
            "seconds_median": float(np.nanmedian([r["seconds"] for r in rs])),
            "dice_per_kind": {k: mean([r["dice"] for r in rs if r["kind"] == k]) for k in kinds},
            "runs": len(rs),
        }
    corrective = [r for r in rows if r["situation"] == "corrective"]
    prior = {(r["case"], r["structure"], r["protocol"]): r["dice"] for r in corrective if r["method"] == "prior"}
    raised = {
        m: [r["dice"] > prior[(r["case"], r["structure"], r["protocol"])] for r in corrective if r["method"] == m]
        for m in METHODS
    }
    summary["corrective_raised_fraction"] = {m: float(np.mean(v)) for m, v in raised.items()}
    this_run = ("python benchmarks/refinement_real.py " + " ".join(args.argv)).strip()
    command = command or this_run
    latency_command = this_run if latency else None
    rows_machine = rows_machine or machine()
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "refinement_real.json"), "w") as f:
        json.dump(
            {
                "command": command.strip(),
                "latency_command": latency_command,
                "machine": rows_machine,
                "latency_machine": machine() if latency else None,
                "summary": summary,
                "latency": latency,
                "rows": rows,
            },
            f,
            indent=1,
        )

    lines = [
        "# Scribble refinement on real CT and MR volumes, through the server",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {rows_machine}  ",
        f"Development set: {len({(r['case'], r['structure']) for r in rows})} structures on "
        f"{len({r['case'] for r in rows})} volumes; stroke seeds {args.seeds}. Dice against the dense truth; "
        "seconds: median client round trip (ours) or in-process call (graph cut, plain random walker).",
        "",
    ]
    binary = summary.get("binary", {})
    methods = ("crf", "random_walk", "graphcut", "random_walker_plain")
    lines += [
        "## Binary (Slicer scribbles panel), no prior",
        "",
        "| protocol | "
        + " | ".join(f"`{m}` Dice" for m in methods)
        + " | "
        + " | ".join(f"`{m}` s" for m in methods)
        + " |",
        "|---" * (1 + 2 * len(methods)) + "|",
    ]
    for protocol in PROTOCOLS:
        if protocol in binary:
            b = binary[protocol]
            lines.append(
                f"| {protocol} | "
                + " | ".join(cell(b, m, "dice_mean", 3) for m in methods)
                + " | "
                + " | ".join(cell(b, m, "seconds_median", 2) for m in methods)
                + " |"
            )
    if "3 slices" in binary:
        kinds = sorted(binary["3 slices"]["crf"]["dice_per_kind"])
        lines += [
            "",
            "By kind of structure, 3 slices:",
            "",
            "| kind | " + " | ".join(f"`{m}`" for m in methods) + " |",
            "|---" * (1 + len(methods)) + "|",
        ]
        for k in kinds:
            lines.append(
                f"| {k} | " + " | ".join(f"{binary['3 slices'][m]['dice_per_kind'][k]:.3f}" for m in methods) + " |"
            )
        lines += [
            "",
            "Per structure, 3 slices (mean over seeds):",
            "",
            "| volume | structure | kind | " + " | ".join(f"`{m}`" for m in methods) + " |",
            "|---" * (3 + len(methods)) + "|",
        ]
        structures = sorted(
            {(r["case"], r["structure"], r["kind"]) for r in rows if r["situation"] == "binary"},
            key=lambda x: (x[0], x[1]),
        )
        for c, n, k in structures:
            cells = [
                mean(
                    [
                        r["dice"]
                        for r in rows
                        if r["situation"] == "binary"
                        and r["protocol"] == "3 slices"
                        and r["case"] == c
                        and r["structure"] == n
                        and r["method"] == m
                    ]
                )
                for m in methods
            ]
            lines.append(f"| {c} | {n} | {k} | " + " | ".join(f"{x:.3f}" for x in cells) + " |")
    mc = summary.get("multiclass", {})
    if mc:
        mmethods = ("crf", "random_walk", "random_walker_plain")
        lines += [
            "",
            "## Multi-class (every structure of a volume in one scribble map), no prior",
            "",
            "| protocol | "
            + " | ".join(f"`{m}` Dice" for m in mmethods)
            + " | "
            + " | ".join(f"`{m}` s" for m in mmethods)
            + " |",
            "|---" * (1 + 2 * len(mmethods)) + "|",
        ]
        for protocol in PROTOCOLS:
            if protocol in mc:
                lines.append(
                    f"| {protocol} | "
                    + " | ".join(cell(mc[protocol], m, "dice_mean", 3) for m in mmethods)
                    + " | "
                    + " | ".join(cell(mc[protocol], m, "seconds_median", 2) for m in mmethods)
                    + " |"
                )
    co = summary.get("corrective", {})
    if co:
        lines += [
            "",
            "## Correcting a degraded segment (binary, corrective strokes on 1-3 slices)",
            "",
            "| degradation | prior Dice | `crf` | `random_walk` |",
            "|---|---|---|---|",
        ]
        for how in DEGRADATIONS:
            if how in co:
                lines.append(
                    f"| {how} | {co[how]['prior']['dice_mean']:.3f} | {co[how]['crf']['dice_mean']:.3f} | "
                    f"{co[how]['random_walk']['dice_mean']:.3f} |"
                )
        lines.append("")
        lines.append(
            "Refinement raised the prior's Dice in "
            + ", ".join(f"{100 * v:.0f} % of cases (`{m}`)" for m, v in summary["corrective_raised_fraction"].items())
            + "."
        )
    if latency:
        lines += [
            "",
            "## Latency against volume size (right lung, 3 slices, a training running on the server)",
            "",
            f"Command: `{latency_command}`  ",
            f"Machine: {machine()}",
            "",
            "The first round trip is the method's first request on a server just started, after Next Sample "
            "(`crf` goes first: the session's first stroke).",
            "",
            "| grid | voxels | method | median s | first s | Dice | training running |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in latency:
            lines.append(
                f"| {r['grid']} | {r['voxels'] / 1e6:.2f} M | `{r['method']}` | {r['seconds_median']:.2f} | "
                f"{r['seconds_first']:.2f} | {r['dice']:.3f} | {r['training']} |"
            )
    if pngs:
        lines += [
            "",
            "## Overlays (3 slices; truth green, result red, strokes yellow / blue; "
            "`crf`, `random_walk`, graph cut, plain random walker)",
            "",
        ]
        lines += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pngs]
    with open(os.path.join(RESULTS, "refinement_real.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0", help="stroke seeds, comma-separated")
    parser.add_argument("--cases", default="", help="development cases (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="latency requests per method and grid")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="measure the latency only; the committed accuracy rows, their command and overlays are kept",
    )
    parser.add_argument(
        "--overlays",
        default="ct_chest/ribs,ct_chest/right lung,ct_spine/vertebra L3,"
        "mr_spine/spinal cord,mr_deep_grey/left thalamus,mr_hippocampus_L/hippocampus",
    )
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    args.seeds = [int(s) for s in args.seeds.split(",")]

    from lib.datasets.development import development_set

    rows, latency, overlays = [], [], {}
    wanted = {tuple(x.split("/", 1)) for x in args.overlays.split(",") if x}
    workdir = tempfile.mkdtemp(prefix="refinement_real_")
    if args.latency_only:
        with open(os.path.join(RESULTS, "refinement_real.json")) as f:
            kept = json.load(f)
        try:
            run_latency(workdir, args.repeats, latency)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        order = list(dict.fromkeys((r["case"], r["structure"]) for r in kept["rows"]))  # as first measured
        pngs = [overlay_path(*k) for k in order if k in wanted and os.path.exists(overlay_path(*k))]
        summarise(kept["rows"], latency, args, pngs, command=kept["command"], rows_machine=kept["machine"])
        return
    try:
        for case in development_set([c for c in args.cases.split(",") if c] or None, os.path.join(REPO, ".cache")):
            print(f"{case.name}: {case.volume.image.shape} at {case.volume.spacing} mm", flush=True)
            served = Served(workdir, case.name, case.volume, dict(case.labels))
            try:
                run_case(case, served, args.seeds, rows, overlays)
            finally:
                served.stop()
            summarise(rows, latency, args, [])  # written after every volume: a cut-short run keeps its results
        if not args.skip_latency:
            run_latency(workdir, args.repeats, latency)
        pngs = []
        cases = {c.name: c for c in development_set(sorted({c for c, _ in overlays}), os.path.join(REPO, ".cache"))}
        for (c, n), parts in overlays.items():
            if (c, n) in wanted:
                path = overlay_path(c, n)
                overlay_png(path, cases[c].volume.image, parts)
                pngs.append(path)
        summarise(rows, latency, args, pngs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, APP_DIR)
    main()
