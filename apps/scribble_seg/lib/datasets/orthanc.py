"""A real PACS for the app: Debian's Orthanc with its DICOMweb plugin, run as a plain process, and
a studies folder loaded into it as DICOM (images as CT / MR series, ``final`` labels as DICOM SEG).

Orthanc listens on loopback only, without authentication, with its DICOM port off: it is a local
stand-in for a hospital PACS, reached by the app at ``http://127.0.0.1:<port>/dicom-web``.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from typing import Dict, List, Optional

import SimpleITK as sitk

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PACKAGES = ("orthanc", "orthanc-dicomweb")
INSTALL_LINE = "apt-get update && apt-get install -y " + " ".join(PACKAGES)


def installed() -> bool:
    return os.access(ORTHANC, os.X_OK) and os.path.isfile(DICOMWEB_PLUGIN)


def ensure_installed() -> None:
    """Install Orthanc and its DICOMweb plugin with apt-get when missing and running as root;
    otherwise ``RuntimeError`` with the exact install line."""
    if installed():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"Orthanc is not installed; as root run: {INSTALL_LINE}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], check=True, env=env, stdout=subprocess.DEVNULL)
    if not installed():
        raise RuntimeError(f"apt-get installed {PACKAGES} but {ORTHANC} or {DICOMWEB_PLUGIN} is missing")


def _http(url: str, data: Optional[bytes] = None, method: Optional[str] = None, timeout: float = 30.0):
    headers = {"Content-Type": "application/dicom"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Orthanc:
    """Orthanc on ``127.0.0.1:<port>`` storing into ``folder``; a context manager, or :meth:`start` /
    :meth:`stop`. ``detach`` leaves it running after this Python exits (``make serve-pacs``)."""

    def __init__(self, folder: str, port: int = 8042, detach: bool = False):
        self.folder, self.port, self.detach = os.path.abspath(folder), int(port), detach
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.proc: Optional[subprocess.Popen] = None

    def up(self) -> bool:
        try:
            return "dicom-web" in _http(f"{self.url}/plugins", timeout=2)
        except (OSError, ValueError):
            return False

    def start(self, timeout: float = 60.0) -> "Orthanc":
        ensure_installed()
        if self.up():
            return self
        os.makedirs(os.path.join(self.folder, "db"), exist_ok=True)
        config = {
            "Name": "SCRIBBLE_SEG",
            "StorageDirectory": os.path.join(self.folder, "db"),
            "IndexDirectory": os.path.join(self.folder, "db"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": "127.0.0.1"},
        }
        path = os.path.join(self.folder, "orthanc.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        log = open(os.path.join(self.folder, "orthanc.log"), "ab")
        self.proc = subprocess.Popen(
            [ORTHANC, path], stdout=log, stderr=subprocess.STDOUT, start_new_session=self.detach
        )
        with open(os.path.join(self.folder, "orthanc.pid"), "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.time() + timeout
        while not self.up():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                with open(os.path.join(self.folder, "orthanc.log"), "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"Orthanc did not start on port {self.port}:\n{tail}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.proc is None and os.path.exists(os.path.join(self.folder, "orthanc.pid")):
            with open(os.path.join(self.folder, "orthanc.pid")) as f:
                pid = int(f.read().strip() or 0)
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "Orthanc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def upload(self, paths: List[str]) -> List[Dict[str, str]]:
        """Store DICOM files (``POST /instances``); Orthanc's answers (``ParentSeries`` etc.)."""
        answers = []
        for p in paths:
            with open(p, "rb") as f:
                answers.append(_http(f"{self.url}/instances", data=f.read(), method="POST"))
        return answers

    def series_uids(self) -> List[str]:
        """Every stored series' ``SeriesInstanceUID``."""
        return [
            _http(f"{self.url}/series/{s}")["MainDicomTags"]["SeriesInstanceUID"] for s in _http(f"{self.url}/series")
        ]


def load_studies(orthanc: Orthanc, studies: str, modality: str = "MR", labels: bool = True) -> Dict[str, str]:
    """Store every image of a local studies folder in ``orthanc`` as a DICOM series, and (``labels``) its
    ``final`` label as a DICOM SEG named by the label's ``label_info``; ``{image id: SeriesInstanceUID}``.

    Loading the same folder again stores nothing new (the UIDs derive from the image ids)."""
    from monailabel.datastore.utils.convert import nifti_to_dicom_seg

    from lib.datastore import read_volume
    from lib.dicomweb import ordered_label_info, require_dcmqi

    from .dicom_series import series_uids, write_series

    meta_path = os.path.join(studies, "datastore_v2.json")
    objects = json.load(open(meta_path))["objects"] if os.path.exists(meta_path) else {}
    known = set(orthanc.series_uids())
    loaded = {}
    for path in sorted(glob.glob(os.path.join(studies, "*.nii.gz")) + glob.glob(os.path.join(studies, "*.nrrd"))):
        image_id = os.path.basename(path).split(".")[0]
        uid = series_uids(image_id)["SeriesInstanceUID"]
        loaded[image_id] = uid
        if uid in known:
            continue
        with tempfile.TemporaryDirectory() as series_dir:
            orthanc.upload(write_series(sitk.ReadImage(path), series_dir, modality, image_id, image_id))
            label = glob.glob(os.path.join(studies, "labels", "final", image_id + ".*"))
            if labels and label:
                require_dcmqi()
                info = ((objects.get(image_id) or {}).get("labels", {}).get("final") or {}).get("info") or {}
                named = ordered_label_info(read_volume(label[0], "the label"), info.get("label_info"))
                seg = nifti_to_dicom_seg(series_dir, label[0], named)
                try:
                    orthanc.upload([seg])
                finally:
                    os.unlink(seg)
    return loaded
