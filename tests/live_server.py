"""Start the real ``monailabel start_server`` on a free loopback port, for tests and benchmarks.

The server runs ``python -m monailabel.main start_server`` (what the ``monailabel`` launcher
script runs) in a subprocess, on a copy of the app folder so that models trained by one test
session never leak into another, and is stopped by its pid.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Dict, Optional

import psutil
from monailabel.client import MONAILabelClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_DIR = os.path.join(REPO, "apps", "scribble_seg")

QUIET_ENV = {
    "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",  # no watchdog thread
    "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",  # no scoring subprocess per request
    "MONAI_LABEL_TRACKING_ENABLED": "false",  # MONAI 1.6 rejects MLflow's file store
}


def http_status(exc) -> int:
    """HTTP status of a ``MONAILabelClientException`` (some client methods leave ``status_code`` unset
    and only write ``Status: NNN`` into the message)."""
    import re

    if getattr(exc, "status_code", None):
        return int(exc.status_code)
    m = re.search(r"Status: (\d+)", str(getattr(exc, "msg", exc)))
    return int(m.group(1)) if m else -1


TINY_TRAINING = {
    "max_epochs": 1,
    "epoch_length": 3,
    "train_batch_size": 1,
    "patch_size": [64, 64, 16],
    "bn_recalibration_batches": 2,
    "val_split": 0.0,
}
"""A training request small enough for a test: one epoch of 3 iterations on 64 x 64 x 16 patches."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_app(dest: str) -> str:
    """A copy of the app without models, logs or generated data."""
    ignore = shutil.ignore_patterns("model", "logs", "bin", "data", "__pycache__")
    shutil.copytree(APP_DIR, dest, ignore=ignore)
    return dest


class LiveServer:
    """A running ``monailabel start_server``; use as a context manager or call :meth:`stop`."""

    def __init__(
        self,
        app_dir: str,
        studies: str,
        conf: Optional[Dict[str, str]] = None,
        workdir: str = ".",
        env: Optional[Dict[str, str]] = None,
        timeout: float = 180.0,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = os.path.abspath(workdir)
        self.log_path = os.path.join(workdir, f"server_{self.port}.log")
        cmd = [
            sys.executable,
            "-m",
            "monailabel.main",
            "start_server",
            "--app",
            app_dir,
            "--studies",
            studies,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        for k, v in (conf or {}).items():
            cmd += ["--conf", k, v]
        full_env = {
            **os.environ,
            **QUIET_ENV,
            "MONAI_LABEL_SESSION_PATH": os.path.join(workdir, "sessions"),
            **(env or {}),
        }
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir)
        self._wait(timeout)

    def _wait(self, timeout: float):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/info/", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"server not up after {timeout} s:\n{self.log_tail()}")

    def client(self, client_id: str = "pytest") -> MONAILabelClient:
        # its own tmpdir: the client saves results under the server's temp-file name, which the
        # server deletes after answering -- in a shared /tmp that races with the client's copy
        tmpdir = os.path.join(self.workdir, "client")
        os.makedirs(tmpdir, exist_ok=True)
        return MONAILabelClient(self.url, tmpdir=tmpdir, client_id=client_id)

    def get_json(self, path: str):
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as r:
            return json.loads(r.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as r:
            return r.read()

    def log_tail(self, n: int = 4000) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-n:]

    def stop(self):
        """Stop the server and whatever it started: a training or scoring subprocess left running
        would hold the CPU through the next test or benchmark (the server, on SIGTERM, waits for
        them, and a server killed after 20 s leaves them orphaned)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(children, timeout=10)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # uvicorn shuts down cleanly
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_for_training(client, timeout: float = 600) -> dict:
    """Polls ``GET /train/`` until the latest training is DONE, ERROR or STOPPED; returns its status."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.train_status()
        if status and status.get("status") in ("DONE", "ERROR", "STOPPED"):
            return status
        time.sleep(1.0)
    raise TimeoutError("training did not finish")
