"""Load on a real server: concurrent MONAILabelClients mixing ``infer crf``, ``infer pce``,
``next_sample``, ``save_label`` and ``info``; every request must be answered without a 5xx and
every saved label must come back byte-identical. The same load runs against our server (inference
in a worker thread) and against MONAI Label's inference endpoint (on the event loop), side by side.

    python benchmarks/load.py [--threads 8 --per-thread 20 --repeats 3]

Starts ``monailabel start_server`` on a loopback port over 8 phantoms (4 with scribbles), trains
``pce`` briefly through ``POST /train/pce`` (so that ``infer pce`` runs a real model), then runs
the load on each server. Writes ``benchmarks/results/load.md`` and ``.json``.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from common import RESULTS, machine  # noqa: E402

SERVERS = {"ours": {"infer_in_worker": "true"}, "monai_label": {"infer_in_worker": "false"}}
SERVERS_TITLE = {
    "ours": "ours (inference on one worker thread)",
    "monai_label": "MONAI Label's endpoint (inference on the event loop)",
}


def wait_for_background(server, timeout: float = 600.0) -> None:
    """Waits until the server is quiet: the scoring subprocess that start-up and every training
    launch has run to its end, so that the load measures requests, not a scoring sharing the CPU."""
    import urllib.error

    start = time.time()
    while time.time() < start + timeout:
        try:
            task = server.get_json("/scoring/")
        except urllib.error.HTTPError:  # 404: no scoring task (yet)
            task = None
        if task and task.get("status") not in ("RUNNING", "QUEUED"):
            return
        if task is None and time.time() > start + 30:  # none was started
            return
        time.sleep(1)
    raise TimeoutError("the server's scoring did not finish")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the load against each server")
    args = parser.parse_args()

    from lib.datasets.sample import build_studies, label_info
    from lib.scribbles.convention import ScribbleConvention
    from lib.scribbles.simulate import simulate_scribbles
    from live_server import LiveServer, copy_app
    from load_driver import run_load

    work = tempfile.mkdtemp(prefix="load_")
    root = os.path.join(work, "data")
    manifest = build_studies(root, "phantoms", n=8, scribbled=4, seed=0)
    convention = ScribbleConvention(manifest["labels"])
    images = sorted(c for c, m in manifest["cases"].items() if not m["scribbled"])
    scribbles = {}
    for case in images:
        truth = nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz"))
        strokes = simulate_scribbles(np.asarray(truth.dataobj), truth.header.get_zooms()[:3], convention, seed=1)
        scribbles[case] = os.path.join(work, f"{case}_scribbles.nii.gz")
        nib.save(nib.Nifti1Image(strokes.astype(np.uint8), truth.affine), scribbles[case])
    app = copy_app(os.path.join(work, "app"))
    runs = {name: [] for name in SERVERS}
    for _ in range(args.repeats):  # the servers alternate, so drift on a noisy machine hits both
        for name, conf in SERVERS.items():
            with LiveServer(app, os.path.join(root, "studies"), conf={"models": "pce", **conf}, workdir=work) as server:
                client = server.client()
                if not os.path.exists(os.path.join(app, "model", "pce.pt")):
                    client.train_start(
                        "pce",
                        {
                            "max_epochs": 1,
                            "epoch_length": 10,
                            "train_batch_size": 1,
                            "patch_size": [96, 96, 16],
                            "val_split": 0.25,
                        },
                    )
                    while (client.train_status() or {}).get("status") not in ("DONE", "ERROR"):
                        time.sleep(1)
                    assert client.train_status()["status"] == "DONE", "pce training failed"
                    wait_for_background(server)  # the scoring the training started
                runs[name].append(
                    run_load(
                        server.url,
                        images,
                        scribbles,
                        label_info(convention),
                        "pce",
                        work,
                        args.threads,
                        args.per_thread,
                    )
                )
    shutil.rmtree(work, ignore_errors=True)
    summary = {
        "machine": machine(),
        "threads": args.threads,
        "per_thread": args.per_thread,
        "repeats": args.repeats,
        "runs": runs,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "load.json"), "w") as f:
        json.dump(summary, f, indent=1)

    def median(name, op, key):
        return statistics.median(r["operations"][op][key] for r in runs[name])

    lines = [
        "# Load: concurrent clients on one server",
        "",
        f"Command: `python benchmarks/load.py --threads {args.threads} --per-thread {args.per_thread} "
        f"--repeats {args.repeats}`  ",
        f"Machine: {summary['machine']}  ",
        "Server: `monailabel start_server` on loopback, 8 phantoms 160x160x16, `pce` trained briefly. "
        f"The same load against two servers on the same app, alternating, {args.repeats} times each: **ours** "
        "runs each inference on one worker thread (conf `infer_in_worker true`, the default; one inference at "
        "a time); **MONAI Label's endpoint** (conf `infer_in_worker false`) runs it on the server's event "
        "loop, where every other request waits for it. Figures are medians over the repeats.",
        "",
    ]
    for name, rs in runs.items():
        walls = [r["wall_seconds"] for r in rs]
        lines += [
            f"* {SERVERS_TITLE[name]}: {sum(r['requests'] for r in rs)} requests ({args.repeats} x "
            f"{args.threads} threads x {args.per_thread}), wall {statistics.median(walls):.1f} s median "
            f"({', '.join(f'{w:.1f}' for w in walls)}), 5xx or no answer "
            f"**{sum(r['errors_5xx'] for r in rs)}**, labels saved {sum(r['labels_saved'] for r in rs)}, "
            f"read back byte-identical **{sum(r['labels_verified'] for r in rs)}**, lost "
            f"**{sum(r['labels_lost'] for r in rs)}**"
        ]
    ours_wall = statistics.median(r["wall_seconds"] for r in runs["ours"])
    theirs_wall = statistics.median(r["wall_seconds"] for r in runs["monai_label"])
    lines += [
        "",
        f"Whole load, ours / MONAI Label's endpoint: **{ours_wall / theirs_wall:.2f}x** the time.",
        "",
        "| operation | requests per run | p50 s ours | p95 s ours | p50 s MONAI Label | p95 s MONAI Label "
        "| p95 MONAI Label / ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for op in runs["ours"][0]["operations"]:
        a95, b95 = median("ours", op, "p95_seconds"), median("monai_label", op, "p95_seconds")
        lines.append(
            f"| `{op}` | {runs['ours'][0]['operations'][op]['requests']} | "
            f"{median('ours', op, 'p50_seconds'):.3f} | {a95:.3f} | "
            f"{median('monai_label', op, 'p50_seconds'):.3f} | {b95:.3f} | {b95 / max(a95, 1e-9):.1f}x |"
        )
    with open(os.path.join(RESULTS, "load.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "apps", "scribble_seg"))
    main()
