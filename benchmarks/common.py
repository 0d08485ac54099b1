"""Shared by the benchmarks: an in-process ScribbleSegApp (the real MONAI Label train/infer tasks,
without HTTP) on a phantom studies folder, and small timing helpers."""

import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

os.environ.setdefault("MONAI_LABEL_DATASTORE_AUTO_RELOAD", "false")
os.environ.setdefault("MONAI_LABEL_AUTO_UPDATE_SCORING", "false")
os.environ.setdefault("MONAI_LABEL_TRACKING_ENABLED", "false")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_DIR = os.path.join(REPO, "apps", "scribble_seg")
RESULTS = os.path.join(REPO, "benchmarks", "results")
sys.path.insert(0, APP_DIR)


def make_app(workdir: str, studies: str, conf: Dict[str, str]):
    """A fresh copy of the app (no models) serving a copy of ``studies``, built in this process."""
    from monailabel.interfaces.utils.app import clear_cache

    app_dir = os.path.join(workdir, "app")
    shutil.rmtree(app_dir, ignore_errors=True)
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("model", "logs", "bin", "data", "__pycache__"))
    work_studies = os.path.join(workdir, "studies")
    shutil.rmtree(work_studies, ignore_errors=True)
    shutil.copytree(studies, work_studies)
    clear_cache()
    from main import ScribbleSegApp

    return ScribbleSegApp(app_dir, work_studies, conf)


def train_request(model: str, args, **extra) -> Dict[str, object]:
    """A training request of ``model`` with the budget, seed and device of a benchmark's ``args``
    (``epochs``, ``epoch_length``, ``batch``, ``seed``, ``device``), from scratch."""
    return {
        "model": model,
        "max_epochs": args.epochs,
        "epoch_length": args.epoch_length,
        "train_batch_size": args.batch,
        "seed": args.seed,
        "device": args.device,
        "pretrained": False,
        **extra,
    }


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Dict[str, float]:
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": repeats}


def machine() -> str:
    import torch

    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True)
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu.stdout.strip() or 'cpu'} ({os.cpu_count()} cores, torch {torch.__version__}, {dev})"
