"""Importers of real labelled volumes that registry packages carry (no dataset URL is reachable here).

* **CITI168 hippocampus** (``hippunfold`` wheel on PyPI, ``hippunfold/resources/CITI168/``): the
  left and right hippocampus crops of the CIT168 T1w template at 0.3 mm, each with its binary
  mask. Only the files are read; the package's code is never imported. Label: ``hippocampus``.
* **ITK brain** (Debian package ``insighttoolkit5-examples``): a real T1 head
  (``KmeansTest_T1UCharRaw.nii.gz``, 128 x 128 x 62 at 2 x 2 x 3 mm) with its skull-stripped brain
  (``KmeansTest_T1RawSkullStrip.nii.gz``, brain = non-zero). Label: ``brain``. When the package is
  not installed, :func:`itk_examples_dir` fetches it with ``apt-get download`` and unpacks it with
  ``dpkg -x`` into a cache folder (no root needed).
* **CTChest4** (``slicerio`` wheel, ``slicerio/data/``): a low-dose chest CT, 128 x 128 x 34 at
  3.05 x 3.05 x 10 mm, with a Slicer segmentation (``Segmentation.seg.nrrd``) of ribs, the
  cervical / thoracic / lumbar vertebral column, the right and left lung and the remaining tissue.
* **TPTBox spine** (``tptbox`` wheel, ``TPTBox/tests/sample_ct`` and ``sample_mri``): a lumbar CT
  crop and a cervical T2w MR crop at 1.5 mm, with vertebra masks (``seg-vert``: vertebra ``k``,
  disc ``100 + k``) and vertebra sub-regions (``seg-subreg``: 60 spinal cord, 61 spinal canal).
* **colin27 + AAL** (Debian package ``mricron-data``): the colin27 T1 average
  (``templates/ch2.nii.gz``, 1 mm) with the hand-drawn AAL atlas on it (``templates/aal.nii.gz``).

Every wheel is located, never imported (their code pulls dependencies the app does not have);
every Debian package is read from the system or from a cached ``apt-get download``. Volumes are
returned in RAS order, so the last array axis is the axial (inferior-superior) one.
"""

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from typing import Dict, Optional, Sequence, Tuple

import nibabel as nib
import numpy as np

from .study import LabelledVolume, crop_to_label, resample

ACDC_CLASS_NAMES: Dict[int, str] = {1: "rv", 2: "myocardium", 3: "lv"}
"""ACDC / MSCMR scribble class values (Valvano et al.; CycleMix) and the phantoms' names for them:
``from_ignore_index(label, convention, ACDC_CLASS_NAMES)`` converts their scribbles (0 =
background, 4 = unannotated)."""

CITI168_LABELS: Dict[str, int] = {"hippocampus": 1}
ITK_BRAIN_LABELS: Dict[str, int] = {"brain": 1}
ITK_EXAMPLES_PACKAGE = "insighttoolkit5-examples"
_ITK_DATA = "usr/share/doc/insighttoolkit5-examples/examples/Data"
MRICRON_PACKAGE = "mricron-data"
_MRICRON_DATA = "usr/share/mricron/templates"


def _load(path: str, canonical: bool = False):
    img = nib.load(path)
    if canonical:
        img = nib.as_closest_canonical(img)
    return np.asarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms()[:3])


def wheel_dir(package: str, *parts: str, requirement: str) -> str:
    """A data folder inside an installed wheel, located through its import spec but not imported."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"this data needs the {requirement} wheel: pip install --no-deps {requirement}")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is missing from the installed {package} package")
    return path


def citi168_dir() -> str:
    """Folder of the CITI168 files in the installed ``hippunfold`` wheel (located, not imported)."""
    return wheel_dir("hippunfold", "resources", "CITI168", requirement="hippunfold==0.5.11")


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


def debian_data_dir(package: str, data: str, cache_dir: Optional[str] = None) -> str:
    """Folder ``data`` (relative to ``/``) of a Debian package: the installed package, else a cached
    copy, else fetched into ``cache_dir`` (default ``.cache/<package>``) with ``apt-get download`` +
    ``dpkg -x`` (no root needed)."""
    system = os.path.join("/", data)
    if os.path.isdir(system):
        return system
    cache_dir = os.path.abspath(cache_dir or os.path.join(os.getcwd(), ".cache", package))
    cached = os.path.join(cache_dir, data)
    if os.path.isdir(cached):
        return cached
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise FileNotFoundError(f"{package} is not installed and apt-get/dpkg are not available")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        if r.returncode != 0 or not debs:
            raise FileNotFoundError(f"apt-get download {package} failed: {r.stderr.strip()[-300:]}")
        os.makedirs(cache_dir, exist_ok=True)
        subprocess.run(["dpkg", "-x", debs[0], cache_dir], check=True, capture_output=True)
    return cached


def itk_examples_dir(cache_dir: Optional[str] = None) -> str:
    """Data folder of ``insighttoolkit5-examples`` (see :func:`debian_data_dir`)."""
    return debian_data_dir(ITK_EXAMPLES_PACKAGE, _ITK_DATA, cache_dir)


def load_itk_brain(data_dir: Optional[str] = None) -> LabelledVolume:
    """The ITK example T1 head with its brain mask, at its native 2 x 2 x 3 mm."""
    data_dir = data_dir or itk_examples_dir()
    image, spacing = _load(os.path.join(data_dir, "KmeansTest_T1UCharRaw.nii.gz"))
    brain, _ = _load(os.path.join(data_dir, "KmeansTest_T1RawSkullStrip.nii.gz"))
    return LabelledVolume(image=image.astype(np.float32), label=(brain > 0).astype(np.uint8), spacing=spacing)


def _relabel(groups: Dict[str, Tuple[np.ndarray, Sequence[int]]]) -> Tuple[np.ndarray, Dict[str, int]]:
    """Class-index map ``1..K`` from ``{name: (source label map, its values)}`` (all sources on one
    grid), and its labels ``{name: k}`` in the groups' order."""
    shape = next(iter(groups.values()))[0].shape
    out = np.zeros(shape, dtype=np.uint8)
    for k, (source, values) in enumerate(groups.values(), start=1):
        out[np.isin(source, list(values))] = k
    return out, {name: k for k, name in enumerate(groups, start=1)}


CT_CHEST_GROUPS: Dict[str, Sequence[int]] = {
    "right lung": (5,),
    "left lung": (6,),
    "vertebral column": (2, 3, 4),
    "ribs": (1,),
}
"""CTChest4's segments (``Segment*_LabelValue``) grouped into the structures we score."""


def load_ct_chest() -> Tuple[LabelledVolume, Dict[str, int]]:
    """CTChest4 (slicerio wheel) with lungs, vertebral column and ribs, at its native 3.05 x 3.05 x 10 mm."""
    import nrrd

    root = wheel_dir("slicerio", "data", requirement="slicerio==1.4.0")
    image, header = nrrd.read(os.path.join(root, "CTChest4.nrrd"))
    seg, seg_header = nrrd.read(os.path.join(root, "Segmentation.seg.nrrd"))
    if seg.shape != image.shape or not np.allclose(seg_header["space origin"], header["space origin"]):
        raise ValueError("CTChest4's segmentation is not on the image grid")
    names = {
        int(v): seg_header[k.replace("_LabelValue", "_Name")]
        for k, v in seg_header.items()
        if k.startswith("Segment") and k.endswith("_LabelValue")
    }
    if names.get(5) != "right lung" or names.get(1) != "ribs":
        raise ValueError(f"CTChest4's segments are not the expected ones: {names}")
    directions = np.asarray(header["space directions"], dtype=float)
    if header.get("space") != "left-posterior-superior" or np.count_nonzero(directions - np.diag(np.diag(directions))):
        raise ValueError("CTChest4 is expected axis-aligned in LPS space")
    spacing = tuple(float(v) for v in np.abs(np.diag(directions)))
    flips = tuple(ax for ax, sign in enumerate(np.sign(np.diag(directions)) * (-1, -1, 1)) if sign < 0)  # to RAS
    label, labels = _relabel({name: (seg, values) for name, values in CT_CHEST_GROUPS.items()})
    image, label = np.flip(image, flips), np.flip(label, flips)
    return LabelledVolume(
        image=np.ascontiguousarray(image, np.float32), label=np.ascontiguousarray(label), spacing=spacing
    ), labels


TPTBOX_CASES = {
    "ct": (
        "sample_ct",
        "sub-ct_label-22_ct.nii.gz",
        "sub-ct_seg-vert_label-22_msk.nii.gz",
        "sub-ct_seg-subreg_label-22_msk.nii.gz",
    ),
    "mr": (
        "sample_mri",
        "sub-mri_label-6_T2w.nii.gz",
        "sub-mri_seg-vert_label-6_msk.nii.gz",
        "sub-mri_seg-subreg_label-6_msk.nii.gz",
    ),
}
TPTBOX_GROUPS = {
    "ct": {"vertebra L2": ("vert", (21,)), "vertebra L3": ("vert", (22,)), "vertebra L4": ("vert", (23,))},
    "mr": {
        "vertebra C5": ("vert", (5,)),
        "vertebra C6": ("vert", (6,)),
        "vertebra C7": ("vert", (7,)),
        "intervertebral discs": ("vert", (105, 106)),
        "spinal cord": ("subreg", (60,)),
    },
}
"""TPTBox's vertebra numbering: 1-7 cervical, 8-19 thoracic, 20-25 lumbar; discs 100 + the vertebra above."""


def load_tptbox_spine(
    modality: str, spacing: Sequence[float] = (1.5, 1.5, 3.0)
) -> Tuple[LabelledVolume, Dict[str, int]]:
    """The TPTBox lumbar CT (``modality="ct"``) or cervical T2w MR (``"mr"``) crop, in RAS order,
    resampled to ``spacing`` (3 mm axial slices by default, as clinical spine series)."""
    if modality not in TPTBOX_CASES:
        raise ValueError(f"modality must be one of {sorted(TPTBOX_CASES)}, got {modality!r}")
    folder, image_file, vert_file, subreg_file = TPTBOX_CASES[modality]
    root = wheel_dir("TPTBox", "tests", folder, requirement="tptbox==1.1.0")
    image, native = _load(os.path.join(root, image_file), canonical=True)
    masks = {
        "vert": _load(os.path.join(root, vert_file), canonical=True)[0],
        "subreg": _load(os.path.join(root, subreg_file), canonical=True)[0],
    }
    label, labels = _relabel(
        {name: (masks[source], values) for name, (source, values) in TPTBOX_GROUPS[modality].items()}
    )
    volume = LabelledVolume(image=image.astype(np.float32), label=label, spacing=native)
    return resample(volume, spacing), labels


AAL_GROUPS: Dict[str, Sequence[int]] = {
    "left caudate": (71,),
    "right caudate": (72,),
    "left putamen": (73,),
    "right putamen": (74,),
    "left thalamus": (77,),
    "right thalamus": (78,),
}
"""AAL indices (``aal.nii.txt``) of the deep grey nuclei we score: they have T1 contrast, unlike the
gyral AAL regions, whose borders are drawn on sulci rather than intensity edges."""


def load_colin_aal(
    spacing: Sequence[float] = (1.0, 1.0, 3.0), margin_mm: float = 15.0, cache_dir: Optional[str] = None
) -> Tuple[LabelledVolume, Dict[str, int]]:
    """colin27's T1 (``ch2``) with the AAL deep grey nuclei, cropped to them plus ``margin_mm`` and
    resampled to ``spacing`` (3 mm axial slices by default, as a clinical T1 series)."""
    root = debian_data_dir(MRICRON_PACKAGE, _MRICRON_DATA, cache_dir)
    image, native = _load(os.path.join(root, "ch2.nii.gz"), canonical=True)
    aal, _ = _load(os.path.join(root, "aal.nii.gz"), canonical=True)
    if aal.shape != image.shape:
        raise ValueError(f"AAL {aal.shape} is not on colin27's grid {image.shape}")
    label, labels = _relabel({name: (aal, values) for name, values in AAL_GROUPS.items()})
    volume = LabelledVolume(image=image.astype(np.float32), label=label, spacing=native)
    return resample(crop_to_label(volume, margin_mm), spacing), labels
