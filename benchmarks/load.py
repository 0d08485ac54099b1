"""Load on a real server: concurrent MONAILabelClients mixing ``infer crf``, ``infer pce``,
``next_sample`` and ``save_label``; every request must be answered without a 5xx and every saved
label must come back byte-identical.

    python benchmarks/load.py [--threads 8 --per-thread 20]

Starts ``monailabel start_server`` on a loopback port over 8 phantoms (4 with scribbles), trains
``pce`` briefly through ``POST /train/pce`` (so that ``infer pce`` runs a real model), then runs
the load. Writes ``benchmarks/results/load.md`` and ``.json``.
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
from common import RESULTS, machine  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=20)
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
    with LiveServer(app, os.path.join(root, "studies"), conf={"models": "pce"}, workdir=work) as server:
        client = server.client()
        client.train_start("pce", {"max_epochs": 1, "epoch_length": 10, "train_batch_size": 1,
                                   "patch_size": [96, 96, 16], "val_split": 0.25})
        while (client.train_status() or {}).get("status") not in ("DONE", "ERROR"):
            time.sleep(1)
        assert client.train_status()["status"] == "DONE", "pce training failed"
        summary = run_load(server.url, images, scribbles, label_info(convention), "pce", work, args.threads,
                           args.per_thread)
    shutil.rmtree(work, ignore_errors=True)
    summary["machine"] = machine()
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "load.json"), "w") as f:
        json.dump(summary, f, indent=1)
    lines = ["# Load: concurrent clients on one server", "",
             f"Command: `python benchmarks/load.py --threads {args.threads} --per-thread {args.per_thread}`  ",
             f"Machine: {summary['machine']}  ",
             "Server: `monailabel start_server` on loopback, 8 phantoms 160x160x16, `pce` trained briefly; "
             "MONAI Label runs inference on its event loop, so requests queue and latency includes the wait.", "",
             f"* requests: **{summary['requests']}** ({args.threads} threads x {args.per_thread}), wall "
             f"{summary['wall_seconds']} s",
             f"* status codes: {summary['status_counts']}; 5xx or no answer: **{summary['errors_5xx']}**",
             f"* labels saved {summary['labels_saved']}, downloaded back byte-identical **{summary['labels_verified']}**,"
             f" lost **{summary['labels_lost']}**",
             f"* latency over all requests: p50 **{summary['p50_seconds']:.2f} s**, p95 **{summary['p95_seconds']:.2f} s**",
             "", "| operation | requests | p50 s | p95 s |", "|---|---|---|---|"]
    for op, s in summary["operations"].items():
        lines.append(f"| `{op}` | {s['requests']} | {s['p50_seconds']:.2f} | {s['p95_seconds']:.2f} |")
    with open(os.path.join(RESULTS, "load.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "apps", "scribble_seg"))
    main()
