"""Importers of real labelled volumes that registry packages carry (no dataset URL is reachable here).

* **CITI168 hippocampus** (``hippunfold`` wheel on PyPI, ``hippunfold/resources/CITI168/``): the
  left and right hippocampus crops of the CIT168 T1w template at 0.3 mm, each with its binary
  mask. Only the files are read; the package's code is never imported. Label: ``hippocampus``.
* **ITK brain** (Debian package ``insighttoolkit5-examples``): a real T1 head
  (``KmeansTest_T1UCharRaw.nii.gz``, 128 x 128 x 62 at 2 x 2 x 3 mm) with its skull-stripped brain
  (``KmeansTest_T1RawSkullStrip.nii.gz``, brain = non-zero). Label: ``brain``. When the package is
  not installed, :func:`itk_examples_dir` fetches it with ``apt-get download`` and unpacks it with
  ``dpkg -x`` into a cache folder (no root needed).
"""

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from typing import Dict, Optional, Sequence

import nibabel as nib
import numpy as np

from .study import LabelledVolume, crop_to_label, resample

CITI168_LABELS: Dict[str, int] = {"hippocampus": 1}
ITK_BRAIN_LABELS: Dict[str, int] = {"brain": 1}
ITK_EXAMPLES_PACKAGE = "insighttoolkit5-examples"
_ITK_DATA = "usr/share/doc/insighttoolkit5-examples/examples/Data"


def _load(path: str):
    img = nib.load(path)
    return np.asarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms()[:3])


def citi168_dir() -> str:
    """Folder of the CITI168 files in the installed ``hippunfold`` wheel (located, not imported)."""
    spec = importlib.util.find_spec("hippunfold")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("CITI168 needs the hippunfold wheel: pip install --no-deps hippunfold==0.5.11")
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "CITI168")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is missing from the installed hippunfold package")
    return path


def load_citi168(hemi: str, spacing: Sequence[float] = (0.6, 0.6, 1.2), margin_mm: float = 6.0) -> LabelledVolume:
    """One CITI168 hippocampus (``hemi`` = ``"L"`` or ``"R"``), cropped to the mask plus
    ``margin_mm`` and resampled to ``spacing`` (anisotropic by default, like clinical scans)."""
    if hemi not in ("L", "R"):
        raise ValueError(f"hemi must be 'L' or 'R', got {hemi!r}")
    root = citi168_dir()
    image, native = _load(os.path.join(root, f"T1w_300umCoronalOblique_hemi-{hemi}.nii.gz"))
    mask, _ = _load(os.path.join(root, f"Mask_300umCoronalOblique_hemi-{hemi}.nii.gz"))
    volume = LabelledVolume(
        image=(1000.0 * image / max(float(image.max()), 1e-6)).astype(np.float32),
        label=(mask > 0.5).astype(np.uint8),
        spacing=native,
    )
    return resample(crop_to_label(volume, margin_mm), spacing)


def itk_examples_dir(cache_dir: Optional[str] = None) -> str:
    """Data folder of ``insighttoolkit5-examples``: the installed package, else a cached copy,
    else fetched into ``cache_dir`` with ``apt-get download`` + ``dpkg -x``."""
    system = os.path.join("/", _ITK_DATA)
    if os.path.isdir(system):
        return system
    cache_dir = os.path.abspath(cache_dir or os.path.join(os.getcwd(), ".cache", ITK_EXAMPLES_PACKAGE))
    cached = os.path.join(cache_dir, _ITK_DATA)
    if os.path.isdir(cached):
        return cached
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise FileNotFoundError(f"{ITK_EXAMPLES_PACKAGE} is not installed and apt-get/dpkg are not available")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "download", ITK_EXAMPLES_PACKAGE], cwd=tmp, capture_output=True, text=True)
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        if r.returncode != 0 or not debs:
            raise FileNotFoundError(f"apt-get download {ITK_EXAMPLES_PACKAGE} failed: {r.stderr.strip()[-300:]}")
        os.makedirs(cache_dir, exist_ok=True)
        subprocess.run(["dpkg", "-x", debs[0], cache_dir], check=True, capture_output=True)
    return cached


def load_itk_brain(data_dir: Optional[str] = None) -> LabelledVolume:
    """The ITK example T1 head with its brain mask, at its native 2 x 2 x 3 mm."""
    data_dir = data_dir or itk_examples_dir()
    image, spacing = _load(os.path.join(data_dir, "KmeansTest_T1UCharRaw.nii.gz"))
    brain, _ = _load(os.path.join(data_dir, "KmeansTest_T1RawSkullStrip.nii.gz"))
    return LabelledVolume(image=image.astype(np.float32), label=(brain > 0).astype(np.uint8), spacing=spacing)
