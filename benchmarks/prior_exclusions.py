"""What ZScribbleSeg's spatial prior would teach a trained 2D network: on training patches drawn as
the trainer draws them, which unannotated voxels the prior declares "not class k", scored against
the dense truth (a diagnostic of finished ``benchmarks/accuracy.py`` rows; the truth is read here
only, it never reached their training).

Per row, over ``--batches`` batches of 2 patches (96 x 96 in-plane, all slices, centred on a
stroke, as the trainer's positive draws), each patch run slice-wise through the row's published
network (eval mode):

* mean posterior of the unannotated voxels ``U`` against their true class fractions and the
  scribbles' frequencies ``pi^0``; the EM estimate and whether it stays in the plausible range
  (:func:`lib.losses.spatial_prior.plausible_mixture_ratios`);
* for ``pi`` = the ratios the trainer would use (EM or its fallback), ``pi^0`` and the true
  fractions: the share of each class's own unannotated voxels that the prior excludes from it
  (:func:`lib.losses.spatial_prior.spatial_affinity`, threshold at the ``1 - pi_k`` rank over
  ``U``) -- voxels the prior loss pushes away from their true class. 0 is what the prior needs.

    python benchmarks/prior_exclusions.py <accuracy row workdirs of exmod / zscribbleseg rows>

Each argument is the workdir of one accuracy row (``<workdir>/app`` holds its published model,
``<workdir>/../data`` its phantoms). Writes ``benchmarks/results/prior_exclusions.md`` (and ``.json``).
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

from common import RESULTS, machine  # noqa: E402

PATCH = 96


def patch_batches(data, n_batches, seed):
    """``n_batches`` of 2 ``(image z-scored, scribbles, truth)`` patches from the scribbled volumes."""
    rng = np.random.default_rng(seed)
    paths = sorted(glob.glob(os.path.join(data, "studies", "labels", "final", "*.nii.gz")))
    for _ in range(n_batches):
        batch = []
        for _ in range(2):
            path = paths[rng.integers(len(paths))]
            case = os.path.basename(path)[:-7]
            scribbles = np.asarray(nib.load(path).dataobj).astype(np.int64)
            image = np.asarray(nib.load(os.path.join(data, "studies", f"{case}.nii.gz")).dataobj).astype(np.float32)
            truth = np.asarray(nib.load(os.path.join(data, "groundtruth", f"{case}.nii.gz")).dataobj).astype(np.int64)
            cx, cy, _ = np.argwhere(scribbles > 0)[rng.integers(int((scribbles > 0).sum()))]
            x0 = int(np.clip(cx - PATCH // 2, 0, image.shape[0] - PATCH))
            y0 = int(np.clip(cy - PATCH // 2, 0, image.shape[1] - PATCH))
            window = (slice(x0, x0 + PATCH), slice(y0, y0 + PATCH))
            batch.append(((image[window] - image.mean()) / image.std(), scribbles[window], truth[window]))
        yield [np.stack(x) for x in zip(*batch)]


def excluded_share(affinity, truth, unannotated, pi):
    """Per class k: (own unannotated voxels excluded from k, own unannotated voxels)."""
    out = []
    for k in range(affinity.shape[1]):
        values = affinity[:, k][unannotated]
        rank = max(1, min(values.numel(), int((1.0 - float(pi[k])) * values.numel())))
        excluded = (affinity[:, k] < values.kthvalue(rank).values) & unannotated
        own = (truth == k) & unannotated
        out.append((int((excluded & own).sum()), int(own.sum())))
    return np.asarray(out, dtype=np.float64)


def diagnose(work, row, n_batches, seed):
    import torch
    from main import ScribbleSegApp
    from monailabel.interfaces.utils.app import clear_cache

    from lib.losses.spatial_prior import em_mixture_ratios, plausible_mixture_ratios, scribble_priors, spatial_affinity
    from lib.scribbles.convention import ScribbleConvention
    from lib.trainers.exmod import to_slices

    convention = ScribbleConvention(row["labels"])
    clear_cache()
    app = ScribbleSegApp(
        os.path.join(work, "app"), os.path.join(work, "studies"), {"models": row["base_recipe"], **row["conf"]}
    )
    network = app._infers[row["base_recipe"]].loaded_network(torch.device("cpu")).eval()
    data = os.path.join(os.path.dirname(os.path.normpath(work)), "data")
    first = sorted(glob.glob(os.path.join(data, "studies", "*.nii.gz")))[0]
    spacing = [float(v) for v in nib.load(first).header.get_zooms()[:2]]  # in-plane mm (the phantoms: one grid)
    sums = {k: np.zeros(convention.num_classes) for k in ("posterior", "true", "scribbles", "em")}
    shares = {k: np.zeros((convention.num_classes, 2)) for k in ("used", "scribbles", "true")}
    fallbacks = 0
    for image, scribbles, truth in patch_batches(data, n_batches, seed):
        x = torch.as_tensor(image)[:, None]
        with torch.no_grad():
            p = to_slices(torch.softmax(network(x).float(), 1))
        image2d, s2d, t2d = (to_slices(torch.as_tensor(a)[:, None]) for a in (image, scribbles, truth))
        targets, annotated = convention.targets(s2d[:, 0])
        u, t2d = ~annotated, t2d[:, 0]
        pi0 = scribble_priors(targets, annotated, convention.num_classes)
        true = torch.as_tensor(
            np.bincount(t2d[u].numpy(), minlength=convention.num_classes) / int(u.sum()), dtype=torch.float32
        )
        em = em_mixture_ratios(p.permute(0, 2, 3, 1)[u], pi0)
        used, ok = plausible_mixture_ratios(em, pi0)
        fallbacks += int(not ok)
        for key, value in (
            ("posterior", p.permute(0, 2, 3, 1)[u].mean(0)),
            ("true", true),
            ("scribbles", pi0),
            ("em", em),
        ):
            sums[key] += value.numpy()
        affinity = spatial_affinity(p, image2d, spacing)
        for key, pi in (("used", used), ("scribbles", pi0), ("true", true)):
            shares[key] += excluded_share(affinity, t2d, u, pi)
    names = convention.class_names
    return {
        "row": row["recipe"],
        "batches": n_batches,
        "em_fallback_fraction": fallbacks / n_batches,
        **{f"mean_{k}": dict(zip(names, (v / n_batches).round(3).tolist())) for k, v in sums.items()},
        **{
            f"own_excluded_with_{k}": dict(zip(names, (v[:, 0] / np.maximum(v[:, 1], 1)).round(3).tolist()))
            for k, v in shares.items()
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = [diagnose(w, row_json(w), args.batches, args.seed) for w in args.workdirs]
    names = list(rows[0]["mean_true"])
    fmt = lambda d: "(" + ", ".join(f"{v:.3f}" for v in d.values()) + ")"  # noqa: E731
    lines = [
        "# ZScribbleSeg's spatial prior on trained networks: which unannotated voxels it excludes",
        "",
        "Command: `python benchmarks/prior_exclusions.py <row workdirs> "
        f"--batches {args.batches} --seed {args.seed}`  ",
        f"Machine: {machine()}  ",
        f"Data: {args.batches} batches of 2 training patches (96 x 96, all slices, centred on a stroke) "
        "of the accuracy "
        "benchmark's scribbled phantoms, each row's published weights; fractions over the unannotated voxels U, "
        "classes (" + ", ".join(names) + ").",
        "",
        "| row | true fractions of U | scribbles' pi0 | mean posterior | EM estimate | EM fell back |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['row']}` | {fmt(r['mean_true'])} | {fmt(r['mean_scribbles'])} | {fmt(r['mean_posterior'])} | "
            f"{fmt(r['mean_em'])} | {100 * r['em_fallback_fraction']:.0f} % |"
        )
    lines += [
        "",
        "Share of each class's own unannotated voxels that the prior excludes from it (pushes away from "
        "its true class; 0 is right):",
        "",
        "| row | pi | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        for key, label in (
            ("used", "as trained (EM or fallback)"),
            ("scribbles", "scribbles' pi0"),
            ("true", "true fractions"),
        ):
            lines.append(
                f"| `{r['row']}` | {label} | "
                + " | ".join(f"{v:.2f}" for v in r[f"own_excluded_with_{key}"].values())
                + " |"
            )
    print("\n".join(lines))
    with open(os.path.join(RESULTS, "prior_exclusions.json"), "w") as f:
        json.dump({"machine": machine(), "rows": rows}, f, indent=1)
    with open(os.path.join(RESULTS, "prior_exclusions.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
