"""Concurrent clients against a live server: a mix of ``infer crf``, ``infer <model>``,
``next_sample``, ``save_label`` and ``info``, each thread its own ``MONAILabelClient``. Every saved label is
downloaded back at the end and compared byte for byte. Used by a test (small) and by
``benchmarks/load.py`` (8 threads x 20 requests)."""

import os
import random
import statistics
import threading
import time
from collections import defaultdict
from typing import Dict, List, Sequence

import nibabel as nib
import numpy as np
from monailabel.client import MONAILabelClient

from live_server import http_status

OPERATIONS = ("infer_crf", "infer_model", "next_sample", "save_label", "info")


def _percentile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def run_load(
    url: str,
    images: Sequence[str],
    scribbles: Dict[str, str],
    label_info,
    model: str,
    workdir: str,
    threads: int = 8,
    per_thread: int = 20,
    seed: int = 0,
) -> Dict:
    """Run the mix; returns counts, latencies (p50 / p95 per operation and overall) and label checks.

    Args:
        url: server URL.
        images: image ids to use.
        scribbles: ``{image id: scribble file}`` (multi-class convention) for ``crf`` and ``save_label``.
        label_info: the ``label_info`` of those files.
        model: a trained segmentation model.
        workdir: where clients keep their files.
    """
    results: List[Dict] = []
    saved: Dict[tuple, bytes] = {}
    lock = threading.Lock()

    def worker(t: int):
        rng = random.Random(seed * 1000 + t)
        tmp = os.path.join(workdir, f"client_{t}")
        os.makedirs(tmp, exist_ok=True)
        client = MONAILabelClient(url, tmpdir=tmp, client_id=f"load_{t}")
        for i in range(per_thread):
            op = OPERATIONS[(t + i) % len(OPERATIONS)] if i < len(OPERATIONS) else rng.choice(OPERATIONS)
            image = rng.choice(images)
            start = time.perf_counter()
            status = 200
            try:
                if op == "infer_crf":
                    client.infer("crf", image, {"label_info": label_info}, label_in=scribbles[image])
                elif op == "infer_model":
                    client.infer(model, image, {})
                elif op == "next_sample":
                    client.next_sample("random", {})
                elif op == "info":
                    client.info()
                else:
                    path, content = _unique_label(scribbles[image], tmp, t, i)
                    tag = f"load_{t}"
                    client.save_label(image, path, tag=tag, params={"label_info": label_info})
                    with lock:
                        saved[(image, tag)] = content
            except Exception as e:  # any failure is a result to report, not a crash of the driver
                status = http_status(e)
            with lock:
                results.append({"op": op, "status": status, "seconds": time.perf_counter() - start})

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    wall = time.perf_counter() - start

    check = MONAILabelClient(url, tmpdir=os.path.join(workdir, "check"), client_id="check")
    os.makedirs(os.path.join(workdir, "check"), exist_ok=True)
    verified = lost = 0
    for (image, tag), content in saved.items():
        if open(check.download_label(image, tag), "rb").read() == content:
            verified += 1
        else:
            lost += 1

    by_op = defaultdict(list)
    for r in results:
        by_op[r["op"]].append(r)
    summary = {
        "threads": threads,
        "per_thread": per_thread,
        "requests": len(results),
        "wall_seconds": round(wall, 2),
        "status_counts": {str(k): v for k, v in sorted(_count(r["status"] for r in results).items())},
        "errors_5xx": sum(1 for r in results if r["status"] >= 500 or r["status"] < 0),
        "labels_saved": len(saved),
        "labels_verified": verified,
        "labels_lost": lost,
        "p50_seconds": _percentile([r["seconds"] for r in results], 50),
        "p95_seconds": _percentile([r["seconds"] for r in results], 95),
        "operations": {
            op: {
                "requests": len(rs),
                "p50_seconds": _percentile([r["seconds"] for r in rs], 50),
                "p95_seconds": _percentile([r["seconds"] for r in rs], 95),
                "median_seconds": statistics.median([r["seconds"] for r in rs]),
            }
            for op, rs in sorted(by_op.items())
        },
    }
    return summary


def _count(values):
    out: Dict[int, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return out


def _unique_label(scribble_path: str, tmp: str, t: int, i: int):
    """The scribbles plus one extra stroke voxel that identifies (thread, request): unique bytes."""
    img = nib.load(scribble_path)
    data = np.asarray(img.dataobj).copy()
    flat = data.reshape(-1)
    free = np.flatnonzero(flat == 0)
    flat[free[(t * 9973 + i * 101) % len(free)]] = data.max()
    path = os.path.join(tmp, f"label_{t}_{i}.nii.gz")
    nib.save(nib.Nifti1Image(data, img.affine), path)
    return path, open(path, "rb").read()
