"""Load on a real server: concurrent MONAILabelClients mixing ``infer crf``, ``infer pce``,
``next_sample``, ``save_label`` and ``info``; every request must be answered without a 5xx and
every saved label must come back byte-identical. The same load runs against our server (inference
in a worker thread) and against MONAI Label's inference endpoint (on the event loop), side by side.

    python benchmarks/load.py [--threads 8 --per-thread 20]

Starts ``monailabel start_server`` on a loopback port over 8 phantoms (4 with scribbles), trains
``pce`` briefly through ``POST /train/pce`` (so that ``infer pce`` runs a real model), then runs
the load on each server. Writes ``benchmarks/results/load.md`` and ``.json``.
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


SERVERS = {"ours": {"infer_in_worker": "true"}, "monai_label": {"infer_in_worker": "false"}}
SERVERS_TITLE = {"ours": "ours (inference in a worker thread)",
                 "monai_label": "MONAI Label's endpoint (inference on the event loop)"}


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
    runs = {}
    for name, conf in SERVERS.items():
        with LiveServer(app, os.path.join(root, "studies"), conf={"models": "pce", **conf}, workdir=work) as server:
            client = server.client()
            if not os.path.exists(os.path.join(app, "model", "pce.pt")):
                client.train_start("pce", {"max_epochs": 1, "epoch_length": 10, "train_batch_size": 1,
                                           "patch_size": [96, 96, 16], "val_split": 0.25})
                while (client.train_status() or {}).get("status") not in ("DONE", "ERROR"):
                    time.sleep(1)
                assert client.train_status()["status"] == "DONE", "pce training failed"
            runs[name] = run_load(server.url, images, scribbles, label_info(convention), "pce", work, args.threads,
                                  args.per_thread)
    shutil.rmtree(work, ignore_errors=True)
    summary = {"machine": machine(), "threads": args.threads, "per_thread": args.per_thread, "runs": runs}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "load.json"), "w") as f:
        json.dump(summary, f, indent=1)
    ours, theirs = runs["ours"], runs["monai_label"]
    lines = ["# Load: concurrent clients on one server", "",
             f"Command: `python benchmarks/load.py --threads {args.threads} --per-thread {args.per_thread}`  ",
             f"Machine: {summary['machine']}  ",
             "Server: `monailabel start_server` on loopback, 8 phantoms 160x160x16, `pce` trained briefly. "
             "The same load twice, one server after the other on the same app: **ours** runs each inference in a "
             "worker thread (conf `infer_in_worker true`, one inference at a time); **MONAI Label's endpoint** (conf `infer_in_worker false`, the default) "
             "runs it on the server's event loop, where every other request waits for it.", ""]
    for name, run in runs.items():
        lines += [f"* {SERVERS_TITLE[name]}: {run['requests']} requests ({args.threads} threads x "
                  f"{args.per_thread}), wall {run['wall_seconds']} s, status codes {run['status_counts']}, "
                  f"5xx or no answer **{run['errors_5xx']}**, labels saved {run['labels_saved']}, read back "
                  f"byte-identical **{run['labels_verified']}**, lost **{run['labels_lost']}**"]
    lines += ["", "| operation | requests | p50 s ours | p95 s ours | p50 s MONAI Label | p95 s MONAI Label "
              "| p95 MONAI Label / ours |", "|---|---|---|---|---|---|---|"]
    for op in ours["operations"]:
        a, b = ours["operations"][op], theirs["operations"].get(op, {})
        ratio = b.get("p95_seconds", float("nan")) / max(a["p95_seconds"], 1e-9)
        lines.append(f"| `{op}` | {a['requests']} | {a['p50_seconds']:.3f} | {a['p95_seconds']:.3f} | "
                     f"{b.get('p50_seconds', float('nan')):.3f} | {b.get('p95_seconds', float('nan')):.3f} | "
                     f"{ratio:.1f}x |")
    with open(os.path.join(RESULTS, "load.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "apps", "scribble_seg"))
    main()
