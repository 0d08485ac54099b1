"""The development set: real labelled CT and MR volumes that registry packages carry, on which the
app's accuracy defaults are chosen (the phantoms serve tests only).

=====================  ========  =============================================  =====================
case                   modality  structures                                     source (importer)
=====================  ========  =============================================  =====================
``ct_chest``           CT        right / left lung, vertebral column, ribs      slicerio wheel
``ct_spine``           CT        vertebrae L2, L3, L4                           tptbox wheel
``mr_spine``           MR T2w    vertebrae C5, C6, C7, discs, spinal cord       tptbox wheel
``mr_deep_grey``       MR T1     left / right caudate, putamen, thalamus        mricron-data (Debian)
``mr_hippocampus_L/R`` MR T1     hippocampus                                    hippunfold wheel
``mr_head``            MR T1     brain                                          insighttoolkit5-examples
=====================  ========  =============================================  =====================

Every volume has anisotropic voxels with the thick axis last (axial slices), as clinical series.
Each structure has a *kind* -- ``large``, ``elongated`` (long through the slices or thin),
``bone`` or ``small`` -- by which results are also summarised. Built volumes are cached as
``.npz`` under ``<cache_dir>/development`` (default ``.cache``), the wheels are read where pip
installed them and Debian packages from a cached ``apt-get download``: nothing is fetched from a
URL at run time.
"""

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .importers import (
    CITI168_LABELS,
    ITK_BRAIN_LABELS,
    ITK_EXAMPLES_PACKAGE,
    MRICRON_PACKAGE,
    itk_examples_dir,
    load_citi168,
    load_colin_aal,
    load_ct_chest,
    load_itk_brain,
    load_tptbox_spine,
)
from .study import LabelledVolume

CACHE_VERSION = 1


@dataclass(frozen=True)
class DevelopmentCase:
    """A real volume with its dense truth, its structure names and their kinds.

    Attributes:
        name: case id (also the studies file name).
        modality: ``CT`` or ``MR``.
        volume: image, dense class-index label and spacing.
        labels: ``{structure name: class index}`` of ``volume.label``.
        kinds: ``{structure name: kind}``.
    """

    name: str
    modality: str
    volume: LabelledVolume
    labels: Dict[str, int]
    kinds: Dict[str, str]


Loader = Callable[[str], Tuple[LabelledVolume, Dict[str, int]]]
"""Builds a case from the cache root (where Debian packages are unpacked)."""


def _hippocampus(hemi: str) -> Loader:
    return lambda cache: (load_citi168(hemi), dict(CITI168_LABELS))


KINDS: Dict[str, str] = {
    "right lung": "large",
    "left lung": "large",
    "brain": "large",
    "vertebral column": "elongated",
    "ribs": "elongated",
    "spinal cord": "elongated",
    "vertebra L2": "bone",
    "vertebra L3": "bone",
    "vertebra L4": "bone",
    "vertebra C5": "bone",
    "vertebra C6": "bone",
    "vertebra C7": "bone",
    "intervertebral discs": "small",
    "hippocampus": "small",
    "left caudate": "small",
    "right caudate": "small",
    "left putamen": "small",
    "right putamen": "small",
    "left thalamus": "small",
    "right thalamus": "small",
}
"""The kind of every development structure."""

CASES: Dict[str, Tuple[str, Loader]] = {
    "ct_chest": ("CT", lambda cache: load_ct_chest()),
    "ct_spine": ("CT", lambda cache: load_tptbox_spine("ct")),
    "mr_spine": ("MR", lambda cache: load_tptbox_spine("mr")),
    "mr_deep_grey": ("MR", lambda cache: load_colin_aal(cache_dir=os.path.join(cache, MRICRON_PACKAGE))),
    "mr_hippocampus_L": ("MR", _hippocampus("L")),
    "mr_hippocampus_R": ("MR", _hippocampus("R")),
    "mr_head": (
        "MR",
        lambda cache: (
            load_itk_brain(itk_examples_dir(os.path.join(cache, ITK_EXAMPLES_PACKAGE))),
            dict(ITK_BRAIN_LABELS),
        ),
    ),
}
"""``{case: (modality, loader)}``."""


def load_case(name: str, cache_dir: Optional[str] = None) -> DevelopmentCase:
    """One development case, from the cache when it holds this version of it; ``cache_dir``
    (default ``./.cache``) also receives the Debian packages a case is built from."""
    if name not in CASES:
        raise ValueError(f"unknown development case {name!r}; choose from {sorted(CASES)}")
    modality, loader = CASES[name]
    root = os.path.abspath(cache_dir or os.path.join(os.getcwd(), ".cache"))
    cache = os.path.join(root, "development")
    path = os.path.join(cache, f"{name}.v{CACHE_VERSION}.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            volume = LabelledVolume(image=z["image"], label=z["label"], spacing=tuple(map(float, z["spacing"])))
            labels = {str(n): int(k) for n, k in zip(z["names"], z["ids"])}
    else:
        volume, labels = loader(root)
        os.makedirs(cache, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(
            tmp,
            image=volume.image,
            label=volume.label,
            spacing=np.asarray(volume.spacing),
            names=np.asarray(list(labels)),
            ids=np.asarray(list(labels.values())),
        )
        os.replace(tmp, path)
    return DevelopmentCase(
        name=name, modality=modality, volume=volume, labels=labels, kinds={n: KINDS[n] for n in labels}
    )


def development_set(names: Optional[Sequence[str]] = None, cache_dir: Optional[str] = None) -> List[DevelopmentCase]:
    """The development cases named (all by default), in :data:`CASES` order."""
    return [load_case(n, cache_dir) for n in (names or CASES)]
