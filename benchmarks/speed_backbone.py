"""Speed of the training/inference backbone, side by side in one run (medians of several runs).

1. Inference on a 256 x 256 x 32 volume: the ``pce`` infer task's whole pipeline (load NIfTI,
   resample, normalise, network, softmax, restore geometry, argmax, write NIfTI) against the bare
   ``network(x)`` forward on the same volume. Target: pipeline / bare <= 1.5.
2. Training: iterations/s of the base trainer (MONAI Label train task: data loading, patch
   sampling, augmentation, step, metrics, handlers) against a bare PyTorch loop on the same network,
   loss, patch size and batch size. Target: bare / trainer <= 1.3.

    python benchmarks/speed_backbone.py [--repeats 5] [--iterations 40]

Writes ``benchmarks/results/speed_backbone.md`` (and ``.json``).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import RESULTS, machine, make_app, median_time  # noqa: E402

SHAPE, SPACING = (256, 256, 32), (1.25, 1.25, 4.0)
PATCH, BATCH = (96, 96, 16), 2


def build(workdir):
    from lib.datasets.phantoms import make_cardiac_phantom
    from lib.datasets.sample import label_info
    from lib.datasets.study import write_case, write_nifti
    from lib.scribbles.convention import ScribbleConvention
    from lib.scribbles.simulate import simulate_scribbles

    conv = ScribbleConvention({"lv": 1, "myocardium": 2, "rv": 3})
    root = os.path.join(workdir, "data")
    volumes = []
    for i in range(2):
        vol = make_cardiac_phantom(100 + i, shape=SHAPE, spacing=SPACING)
        write_case(root, f"big_{i}", vol)
        scr = simulate_scribbles(vol.label, vol.spacing, conv, seed=i)
        write_nifti(os.path.join(root, "scribbles", f"big_{i}.nii.gz"), scr.astype(np.uint8), vol.affine)
        volumes.append((vol, scr))
    return root, conv, volumes, label_info(conv)


class IterationClock:
    """Timestamps of ITERATION_COMPLETED: throughput including data loading and every handler."""

    def __init__(self):
        self.stamps = []

    def attach(self, engine):
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: self.stamps.append(time.perf_counter()))

    def its_per_s(self, skip=5):
        s = self.stamps[skip:]
        return (len(s) - 1) / (s[-1] - s[0])


def bare_training(network, convention, volumes, iterations, seed):
    """The same step in plain PyTorch: in-memory tensors, random patches around strokes, no engine."""
    from lib.losses import MaskedDiceLoss, PartialCrossEntropyLoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images = [torch.as_tensor((v.image - v.image.mean()) / v.image.std())[None].float() for v, _ in volumes]
    labels = [torch.as_tensor(s)[None] for _, s in volumes]
    pce, dice = PartialCrossEntropyLoss(convention), MaskedDiceLoss(convention)
    opt = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=1e-4)
    network.train()
    stamps = []
    for _ in range(iterations):
        xs, ys = [], []
        for _ in range(BATCH):
            k = int(rng.integers(len(images)))
            lo = [int(rng.integers(0, n - p + 1)) for n, p in zip(SHAPE, PATCH)]
            sl = (slice(None),) + tuple(slice(a, a + p) for a, p in zip(lo, PATCH))
            xs.append(images[k][sl])
            ys.append(labels[k][sl])
        x, y = torch.stack(xs), torch.stack(ys)
        out = network(x)["final"]
        loss = pce(out, y) + dice(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(time.perf_counter())
    s = stamps[5:]
    return (len(s) - 1) / (s[-1] - s[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())

    work = tempfile.mkdtemp(prefix="speed_backbone_")
    root, conv, volumes, info = build(work)
    app = make_app(work, os.path.join(root, "studies"), {"models": "pce", "target_spacing": json.dumps(SPACING)})
    ds = app.datastore()
    for i in range(2):
        ds.save_label(f"big_{i}", os.path.join(root, "scribbles", f"big_{i}.nii.gz"), "final", {"label_info": info})

    # ---- inference: publish (untrained) weights, then pipeline vs bare forward
    config = app.models["pce"]
    torch.save({"model": config.network.state_dict()}, config.path[1])
    infer_task = app._infers["pce"]
    pipeline = median_time(
        lambda: os.unlink(app.infer({"model": "pce", "image": "big_0", "device": "cpu"})["file"]), args.repeats
    )
    net = infer_task.loaded_network("cpu")
    x = torch.as_tensor((volumes[0][0].image - volumes[0][0].image.mean()) / volumes[0][0].image.std())[
        None, None
    ].float()

    def bare_forward():
        with torch.no_grad():
            net(x)

    bare = median_time(bare_forward, args.repeats)

    # ---- training: base trainer vs bare loop, alternating, medians
    task = app._trainers["pce"]
    trainer_rates, bare_rates = [], []
    for r in range(max(3, args.repeats // 2)):
        clock = IterationClock()
        handlers = task.train_handlers
        task.train_handlers = lambda ctx, h=handlers, c=clock: h(ctx) + [c]
        app.train(
            {
                "model": "pce",
                "max_epochs": 1,
                "epoch_length": args.iterations,
                "train_batch_size": BATCH,
                "patch_size": list(PATCH),
                "val_split": 0.0,
                "bn_recalibration_batches": 0,
                "pretrained": False,
                "seed": r,
                "name": f"speed_{r}",
                "device": "cpu",
            }
        )
        task.train_handlers = handlers
        trainer_rates.append(clock.its_per_s())
        bare_rates.append(bare_training(config.build_network(app.conf), conv, volumes, args.iterations, r))

    result = {
        "machine": machine(),
        "inference": {
            "volume": list(SHAPE),
            "spacing_mm": list(SPACING),
            "pipeline": pipeline,
            "bare_forward": bare,
            "ratio": pipeline["median_s"] / bare["median_s"],
        },
        "training": {
            "patch": list(PATCH),
            "batch": BATCH,
            "iterations": args.iterations,
            "trainer_its_per_s": statistics.median(trainer_rates),
            "bare_its_per_s": statistics.median(bare_rates),
            "trainer_runs": trainer_rates,
            "bare_runs": bare_rates,
        },
    }
    result["training"]["ratio"] = result["training"]["bare_its_per_s"] / result["training"]["trainer_its_per_s"]
    write(result, args)


def write(r, args):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "speed_backbone.json"), "w") as f:
        json.dump(r, f, indent=1)
    inf, tr = r["inference"], r["training"]
    lines = [
        "# Backbone speed",
        "",
        f"Command: `python benchmarks/speed_backbone.py --repeats {args.repeats} --iterations {args.iterations}`  ",
        f"Machine: {r['machine']}",
        "",
        f"## Inference, {'x'.join(map(str, inf['volume']))} volume at {inf['spacing_mm']} mm "
        "(AttentionUNet2D5, all parts)",
        "",
        "| | median s | min s | max s | runs |",
        "|---|---|---|---|---|",
        f"| `pce` infer pipeline (load, resample, normalise, network, softmax, restore, argmax, write) | "
        f"{inf['pipeline']['median_s']:.2f} | {inf['pipeline']['min_s']:.2f} | {inf['pipeline']['max_s']:.2f} | "
        f"{inf['pipeline']['runs']} |",
        f"| bare `network(x)` | {inf['bare_forward']['median_s']:.2f} | {inf['bare_forward']['min_s']:.2f} | "
        f"{inf['bare_forward']['max_s']:.2f} | {inf['bare_forward']['runs']} |",
        "",
        f"**pipeline / bare = {inf['ratio']:.2f}** (target <= 1.5)",
        "",
        f"## Training, patch {'x'.join(map(str, tr['patch']))}, batch {tr['batch']}, "
        f"{tr['iterations']} iterations per run",
        "",
        "| | median it/s | runs |",
        "|---|---|---|",
        f"| base trainer (MONAI Label train task) | {tr['trainer_its_per_s']:.3f} | "
        f"{', '.join(f'{v:.3f}' for v in tr['trainer_runs'])} |",
        f"| bare PyTorch loop | {tr['bare_its_per_s']:.3f} | {', '.join(f'{v:.3f}' for v in tr['bare_runs'])} |",
        "",
        f"**bare / trainer = {tr['ratio']:.2f}** (target <= 1.3)",
        "",
    ]
    with open(os.path.join(RESULTS, "speed_backbone.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
