"""Active-learning scoring (``next_to_scribble``): whole-volume MC dropout against the app's
foreground-box scoring, side by side in one run.

Question: how much cheaper can scoring a volume get while the ranking of the volumes stays that of
the reference's 20 whole-volume passes (Spearman rho >= 0.9)?

1. **Ranking.** ``pce`` is trained in-process (the real MONAI Label train task) on the sample's
   scribbled phantoms. Every sample volume (160 x 160 x 16, 1.5 x 1.5 x 8 mm) is then scored by
   - ``reference``: :func:`lib.activelearning.uncertainty.mc_dropout_maps` over the whole volume,
     20 passes, float32;
   - ``reference, other dropout masks``: the same with other dropout seeds: the ceiling any cheaper
     method can reach, since 20 passes are themselves a noisy estimate;
   - ``box, T``: :func:`lib.activelearning.uncertainty.foreground_crop_score` (one deterministic
     pass, then ``T`` passes on the predicted foreground's box), float32 and bfloat16 autocast.
   Spearman's rho of each against ``reference`` over the volumes, and the median seconds per volume.
2. **Timing at 256 x 256 x 32** (a phantom rendered at 1.5 x 1.5 x 8 mm, the training spacing, so
   nothing is resampled): median seconds per volume of ``reference`` and of the app's defaults, with
   the box's share of the volume; and the worst case, a foreground that fills the field of view
   (box = whole volume), where only the pass count and the precision help.

    python benchmarks/scoring.py [--epochs 6 --epoch-length 50 --repeats 3 --device cpu]

Writes ``benchmarks/results/scoring.md`` (and ``.json``).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import RESULTS, machine, make_app  # noqa: E402


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--epoch-length", type=int, default=50)
    parser.add_argument("--passes", default="4,6,8,12,20", help="T of the box scoring rows")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per method at 256 x 256 x 32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=os.path.join(RESULTS, "scoring"))
    args = parser.parse_args()

    from lib.activelearning.scoring import EpistemicScoring, scoring_precision
    from lib.activelearning.uncertainty import enable_mc_dropout, foreground_crop_score, mc_dropout_maps, volume_score
    from lib.datasets.phantoms import make_cardiac_phantom
    from lib.datasets.sample import build_studies
    from lib.networks import final_logits, size_divisor

    work = tempfile.mkdtemp(prefix="scoring_")
    manifest = build_studies(os.path.join(work, "sample"), "phantoms", n=20, seed=args.seed)
    app = make_app(work, os.path.join(work, "sample", "studies"), {"models": "pce"})
    t = time.time()
    app.train(
        {
            "model": "pce",
            "max_epochs": args.epochs,
            "epoch_length": args.epoch_length,
            "seed": args.seed,
            "device": args.device,
            "pretrained": False,
        }
    )
    train_s = time.time() - t
    task = app._infers["pce"]
    device = torch.device(args.device)
    network = task.loaded_network(device)
    defaults = EpistemicScoring(task)
    spacing = [float(s) for s in task.target_spacing()]
    margin = defaults.margin_voxels(spacing)
    divisor = size_divisor(network)
    bf16 = scoring_precision(device)

    cases = sorted(manifest["cases"])
    inputs = {}
    for case in cases:
        uri = os.path.join(work, "studies", f"{case}.nii.gz")
        data = task.run_pre_transforms({"image": uri, "image_path": uri}, task.pre_transforms())
        inputs[case] = torch.as_tensor(np.asarray(data["image"]), dtype=torch.float32)[None].to(device)

    def reference(x, seed, passes=20):
        maps = mc_dropout_maps(lambda b: final_logits(network(b)), x, passes, 1, seed=seed)
        return volume_score(maps)

    def box(x, seed, passes, dtype=None, margin=margin):
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return foreground_crop_score(
                network, x, passes, 1, margin=margin, divisor=divisor, seed=seed, logits=final_logits
            )

    methods = {
        "reference (20 whole-volume passes, float32)": lambda x, s: reference(x, s),
        "reference, other dropout masks": lambda x, s: reference(x, s + 1),
    }
    for T in [int(p) for p in args.passes.split(",")]:
        methods[f"box, T={T}, float32"] = lambda x, s, T=T: box(x, s, T)
    methods[f"box, T={defaults.passes}, bfloat16"] = lambda x, s: box(x, s, defaults.passes, torch.bfloat16)
    methods[f"box, T={defaults.passes}, no margin, float32"] = lambda x, s: box(x, s, defaults.passes, None, (0, 0, 0))

    rows = {}
    for name, fn in methods.items():
        enable_mc_dropout(network)
        scores, seconds, shares = [], [], []
        for case in cases:
            t = time.perf_counter()
            info = fn(inputs[case], zlib.crc32(case.encode()))
            seconds.append(time.perf_counter() - t)
            scores.append(info["score"])
            shares.append(info.get("box_fraction", 1.0))
        rows[name] = {
            "scores": scores,
            "median_s": statistics.median(seconds),
            "box_fraction": statistics.median(shares),
        }
        print(f"{name}: {rows[name]['median_s']:.2f} s", flush=True)
    baseline = rows["reference (20 whole-volume passes, float32)"]["scores"]
    for row in rows.values():
        row["spearman"] = spearman(baseline, row["scores"])

    big = make_cardiac_phantom(args.seed + 1000, shape=(256, 256, 32), spacing=tuple(spacing))
    from monai.transforms import NormalizeIntensity

    x_big = torch.as_tensor(NormalizeIntensity()(big.image.astype(np.float32)))[None, None].to(device)
    x_full = x_big.clone()
    timing = {}

    def timed(name, fn, repeats):
        times, info = [], {}
        for _ in range(repeats):
            t = time.perf_counter()
            info = fn()
            times.append(time.perf_counter() - t)
        timing[name] = {
            "median_s": statistics.median(times),
            "runs": repeats,
            "box_fraction": info.get("box_fraction", 1.0),
        }
        print(f"256x256x32 {name}: {timing[name]['median_s']:.1f} s", flush=True)

    precision = torch.bfloat16 if bf16 else None
    label = "bfloat16" if bf16 else "float32"
    timed("reference (20 whole-volume passes, float32)", lambda: reference(x_big, 0), args.repeats)
    timed(
        f"app default: box, T={defaults.passes}, {label}",
        lambda: box(x_big, 0, defaults.passes, precision),
        args.repeats,
    )
    timed(f"box, T={defaults.passes}, float32", lambda: box(x_big, 0, defaults.passes), args.repeats)
    # the worst case: the box is the whole volume (a margin as large as the volume)
    timed(
        f"worst case (box = whole volume), T={defaults.passes}, {label}",
        lambda: box(x_full, 0, defaults.passes, precision, margin=tuple(x_full.shape[2:])),
        args.repeats,
    )

    result = {
        "machine": machine(),
        "device": args.device,
        "train_seconds": train_s,
        "epochs": args.epochs,
        "epoch_length": args.epoch_length,
        "cases": cases,
        "spacing": spacing,
        "margin_voxels": list(margin),
        "divisor": list(divisor),
        "ranking": rows,
        "timing_256x256x32": timing,
        "command": "python benchmarks/scoring.py " + " ".join(sys.argv[1:]),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)

    base = timing["reference (20 whole-volume passes, float32)"]["median_s"]
    lines = [
        "# Active-learning scoring: whole volume vs foreground box",
        "",
        f"`{result['command']}` on {result['machine']}, device {args.device}.",
        "",
        f"`pce` trained in-process for {args.epochs} x {args.epoch_length} iterations ({train_s:.0f} s) on the "
        f"sample's scribbled phantoms; {len(cases)} sample volumes (160 x 160 x 16) scored. Margin "
        f"{tuple(margin)} voxels at {tuple(spacing)} mm, box sizes multiples of {tuple(divisor)}.",
        "",
        "## Ranking against the reference's 20 whole-volume passes",
        "",
        "| method | Spearman rho vs reference | median s / volume | box share of the volume |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['spearman']:.3f} | {row['median_s']:.2f} | {row['box_fraction']:.2f} |")
    lines += [
        "",
        f"## Seconds per 256 x 256 x 32 volume (median of {args.repeats} runs)",
        "",
        "| method | median s | vs reference | box share |",
        "|---|---|---|---|",
    ]
    for name, row in timing.items():
        lines.append(f"| {name} | {row['median_s']:.1f} | {row['median_s'] / base:.3f} | {row['box_fraction']:.2f} |")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    main()
