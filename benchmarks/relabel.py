"""Relabelling time per volume of ``can_em``'s E step (Can et al.'s Table 1 rows), broken down, side
by side in one run (medians of several runs):

1. what each row's E step costs per volume: one forward (``base``), the 3D dense CRF (``+ CRF``),
   ``T`` MC-dropout passes and the Welch test (``+ uncertainty``), and the seed areas that every
   row computes once per run;
2. MC-dropout passes batched (4 copies of the volume per forward) against one pass per forward
   (the app's default: 4 on a GPU, 1 on the CPU, from this comparison);
3. our Welch test from running logit moments (:func:`lib.scribbles.relabel.uncertain_voxels`)
   against the plain library call, ``scipy.stats.ttest_ind(a, b, equal_var=False, axis=0)`` on
   the ``T`` stored logits of the two best classes (which also needs those samples kept in memory).

The network is the recipe's 2.5D attention UNet freshly initialised: weights do not change the
time of a forward, and training one is not what is measured. The volume is a sample phantom
(160 x 160 x 16 voxels, 1.5 x 1.5 x 8 mm, the accuracy benchmark's size) on its own grid, with the
app's simulated scribbles.

    python benchmarks/relabel.py [--passes 10,50 --repeats 3 --device cpu]

Writes ``benchmarks/results/relabel.md`` (and ``.json``).
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import RESULTS, machine, median_time  # noqa: E402

FORWARD = "one forward (base: the network's argmax)"
CRF = "dense CRF, 5 iterations, seeds clamped (+ CRF)"


def load_volume(seed):
    from lib.datasets.sample import build_studies
    from lib.scribbles.convention import ScribbleConvention

    root = tempfile.mkdtemp(prefix="relabel_")
    manifest = build_studies(root, "phantoms", n=1, scribbled=1, seed=seed)
    case = next(iter(manifest["cases"]))
    img = nib.load(os.path.join(root, "studies", f"{case}.nii.gz"))
    strokes = np.asarray(nib.load(os.path.join(root, "studies", "labels", "final", f"{case}.nii.gz")).dataobj)
    image = np.asarray(img.dataobj, dtype=np.float32)
    return image, tuple(float(s) for s in img.header.get_zooms()[:3]), ScribbleConvention(manifest["labels"]), strokes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", default="10,50", help="MC-dropout passes T to time")
    parser.add_argument("--batches", default="1,4", help="copies per forward to compare (at the smallest T)")
    parser.add_argument(
        "--mc-batch",
        type=int,
        default=None,
        help="copies per forward of the E-step timings (default: the app's, by device)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    passes = [int(p) for p in args.passes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    from scipy.stats import ttest_ind

    from lib.activelearning.uncertainty import enable_mc_dropout, mc_dropout_maps, passes_per_forward
    from lib.infers.inferer import SegmentationInferer
    from lib.networks import AttentionUNet2D5
    from lib.scribbles.crf import DenseCRFParams, dense_crf
    from lib.scribbles.relabel import uncertain_voxels
    from lib.scribbles.seed_areas import seed_areas

    args.mc_batch = passes_per_forward(args.device, args.mc_batch)
    torch.manual_seed(0)
    image, spacing, convention, strokes = load_volume(args.seed)
    device = torch.device(args.device)
    network = enable_mc_dropout(AttentionUNet2D5(in_channels=1, out_channels=convention.num_classes).to(device))
    inferer = SegmentationInferer()
    x = torch.as_tensor((image - image.mean()) / image.std())[None, None].to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def forward(batch=1):
        with torch.no_grad():
            z = inferer(x.expand(batch, *x.shape[1:]), network)
        sync()
        return z

    def mc(t, batch):
        out = mc_dropout_maps(lambda b: inferer(b, network), x, t, batch, logit_moments=True)
        sync()
        return out

    seeds = convention.seeds(strokes)
    rows, results = [], {}

    def record(name, timing, per=None, note=""):
        results[name] = {**timing, **({"per": per} if per else {})}
        rows.append((name, timing["median_s"], note))
        print(name, timing, flush=True)

    record(
        "seed areas (random walk, once per run)",
        median_time(lambda: seed_areas(image, seeds, spacing, convention.num_classes), args.repeats, warmup=0),
    )
    area = seed_areas(image, seeds, spacing, convention.num_classes)
    record(FORWARD, median_time(forward, args.repeats))
    probabilities = torch.softmax(forward(), 1)[0].cpu().numpy()
    record(
        CRF,
        median_time(
            lambda: dense_crf(image, probabilities, spacing, seeds=area, params=DenseCRFParams.can_et_al()),
            args.repeats,
        ),
    )

    # batched vs one pass per forward, at the smallest T
    t_small = min(passes)
    per_pass = {}
    for b in batches:
        timing = median_time(lambda: mc(t_small, b), args.repeats)
        per_pass[b] = timing["median_s"] / t_small
        record(f"{t_small} MC passes, {b} per forward", timing, note=f"{1000 * per_pass[b]:.0f} ms per pass")
    for t in passes:
        if t != t_small or args.mc_batch not in batches:
            record(
                f"{t} MC passes, {args.mc_batch} per forward",
                median_time(lambda: mc(t, args.mc_batch), args.repeats, warmup=0),
            )

    # Welch test: ours (moments) vs scipy on the stored samples, at the smallest T
    maps = mc(t_small, args.mc_batch)
    mean, var = maps["logit_mean"].cpu().numpy(), maps["logit_var"].cpu().numpy()
    label = maps["probabilities"].argmax(0).cpu().numpy()
    samples = torch.cat([forward(args.mc_batch) for _ in range(-(-t_small // args.mc_batch))])[:t_small].cpu().numpy()

    def scipy_welch():  # the two best classes' samples by mean logit, then the library's test
        order = np.argsort(-samples.mean(0), axis=0)
        best, second = (np.take_along_axis(samples, order[None, i : i + 1], axis=1)[:, 0] for i in (0, 1))
        return ttest_ind(best, second, equal_var=False, axis=0).pvalue >= 0.05

    ours = median_time(lambda: uncertain_voxels(label, mean, var, t_small), args.repeats)
    scipy_t = median_time(scipy_welch, args.repeats)
    record(f"Welch test, ours (logit moments), T={t_small}", ours)
    record(
        f"Welch test, scipy.stats.ttest_ind on the stored logits, T={t_small}",
        scipy_t,
        note=f"needs {samples.nbytes / 2**20:.0f} MiB of samples",
    )

    e_step = {}
    for t in passes:
        mc_s = results[f"{t} MC passes, {args.mc_batch} per forward"]["median_s"]
        fwd, crf = results[FORWARD]["median_s"], results[CRF]["median_s"]
        e_step[t] = {
            "base": fwd,
            "+ CRF": fwd + crf,
            "+ uncertainty": mc_s + ours["median_s"],
            "+ CRF & uncertainty": mc_s + ours["median_s"] + crf,
        }

    lines = [
        "# can_em: relabelling time per volume (E step)",
        "",
        f"Command: `python benchmarks/relabel.py --passes {args.passes} --batches {args.batches} "
        f"--mc-batch {args.mc_batch} --repeats {args.repeats} --device {args.device}`  ",
        f"Machine: {machine()}, device {args.device}  ",
        f"Volume: phantom {args.seed}, {image.shape[0]}x{image.shape[1]}x{image.shape[2]} voxels, "
        f"{spacing[0]:g}x{spacing[1]:g}x{spacing[2]:g} mm; the recipe's 2.5D attention UNet (untrained: weights "
        f"do not change the time). Medians of {args.repeats} runs.",
        "",
        "| step | median (s) | |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s:.3f} | {note} |" for name, s, note in rows]
    lines += [
        "",
        "E step per volume by Table-1 row (sum of the medians above; the trainer adds loading and saving "
        "the relabelled map):",
        "",
        "| T | " + " | ".join(e_step[passes[0]]) + " |",
        "|---|" + "---|" * len(e_step[passes[0]]),
    ]
    lines += [f"| {t} | " + " | ".join(f"{s:.1f} s" for s in e_step[t].values()) + " |" for t in passes]
    b1, bn = min(batches), max(batches)
    lines += [
        "",
        f"Ratios: {bn} passes per forward vs 1: {per_pass[b1] / per_pass[bn]:.2f}x the speed; "
        f"Welch test scipy / ours: {scipy_t['median_s'] / ours['median_s']:.1f}x; "
        f"T={max(passes)} MC passes / one forward: {e_step[max(passes)]['+ uncertainty'] / fwd:.0f}x.",
    ]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "relabel.json"), "w") as f:
        json.dump(
            {
                "machine": machine(),
                "args": vars(args),
                "timings": results,
                "e_step": {str(k): v for k, v in e_step.items()},
            },
            f,
            indent=1,
        )
    with open(os.path.join(RESULTS, "relabel.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
