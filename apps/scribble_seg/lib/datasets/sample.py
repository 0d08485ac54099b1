"""Build a studies folder the app serves: the embedded phantoms or an imported real dataset.

For each case: the image goes into ``<root>/studies``, its dense ground truth into
``<root>/groundtruth`` (outside the datastore), and for the first ``scribbled`` cases simulated
scribbles are saved through MONAI Label's ``LocalDatastore`` as tag ``final`` with their
``label_info``, exactly as a client's "Submit Label" would store them. The other cases stay
unlabeled for active learning. ``<root>/studies/scribble_seg.json`` holds the source's conf
(its labels and any anatomy-specific settings), which the app reads as the dataset's defaults.
``<root>/sample.json`` records what was built (labels, spacing,
scribble coverage per case); building again with the same arguments is a no-op.
"""

import json
import logging
import os
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import nibabel as nib
import numpy as np

from lib.conf import write_dataset_conf
from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.simulate import ScribbleSimulation, scribble_coverage, simulate_scribbles

from .importers import CITI168_LABELS, ITK_BRAIN_LABELS, load_citi168, load_itk_brain
from .phantoms import PHANTOM_CONF, make_cardiac_phantom
from .study import LabelledVolume, write_case

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 2
"""Bump when phantoms or simulated scribbles change, so cached sample folders are rebuilt."""

Cases = Callable[[int, int], List[Tuple[str, LabelledVolume]]]
SOURCES: Dict[str, Tuple[Dict[str, object], Cases]] = {
    "phantoms": (PHANTOM_CONF, lambda n, seed: [(f"case_{i:03d}", make_cardiac_phantom(seed + i)) for i in range(n)]),
    "citi168": ({"labels": CITI168_LABELS}, lambda n, s: [(f"citi168_{h}", load_citi168(h)) for h in ("L", "R")][:n]),
    "itk-brain": ({"labels": ITK_BRAIN_LABELS}, lambda n, seed: [("itk_brain", load_itk_brain())][:n]),
}
"""Per source: its conf (written beside the studies as :data:`lib.conf.DATASET_CONF`: labels and
any anatomy-specific settings) and its cases."""


def label_info(convention: ScribbleConvention) -> List[Dict[str, object]]:
    """``label_info`` describing a scribble map of ``convention`` (as Slicer would send it)."""
    info = [{"name": name, "id": idx} for name, idx in convention.labels.items()]
    return info + [{"name": "background", "id": convention.background_scribble_id}]


def studies_datastore(studies: str):
    """MONAI Label's ``LocalDatastore`` on ``studies`` (the real datastore writes the labels)."""
    from monailabel.datastore.local import LocalDatastore

    return LocalDatastore(studies, extensions=("*.nii.gz", "*.nii", "*.nrrd"), auto_reload=False)


def save_scribbles(
    datastore,
    case_id: str,
    volume: LabelledVolume,
    convention: ScribbleConvention,
    seed: int,
    simulation: ScribbleSimulation = ScribbleSimulation(),
) -> Dict[str, float]:
    """Simulate an annotator's scribbles on ``volume.label`` and save them for ``case_id`` as tag
    ``final`` with their ``label_info``, as a client's "Submit Label" would; returns their coverage
    (:func:`lib.scribbles.simulate.scribble_coverage`)."""
    scribbles = simulate_scribbles(volume.label, volume.spacing, convention, seed=seed, config=simulation)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{case_id}.nii.gz")
        nib.save(nib.Nifti1Image(scribbles.astype(np.uint8), volume.affine), path)
        datastore.save_label(case_id, path, "final", {"label_info": label_info(convention)})
    return scribble_coverage(scribbles, volume.label, convention)


def build_studies(
    root: str,
    source: str = "phantoms",
    n: int = 20,
    scribbled: Optional[int] = None,
    seed: int = 0,
    simulation: ScribbleSimulation = ScribbleSimulation(),
    force: bool = False,
) -> Dict:
    """Build ``root/studies`` + ``root/groundtruth`` from ``source`` (see :data:`SOURCES`).

    Args:
        root: output folder.
        source: ``phantoms``, ``citi168`` or ``itk-brain``.
        n: number of volumes (sources with fewer volumes give what they have).
        scribbled: how many cases get simulated scribbles (default: 60 %, leaving at least one unlabeled).
        seed: seed of the phantoms and of the scribbles (case ``i`` uses ``seed + i``).
        simulation: scribble simulation knobs.
        force: rebuild even if ``root/sample.json`` says it is up to date.

    Returns:
        the manifest written to ``root/sample.json``.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(SOURCES)}")
    dataset_conf, make_cases = SOURCES[source]
    labels = dataset_conf["labels"]
    key = {
        "version": GENERATOR_VERSION,
        "source": source,
        "n": n,
        "scribbled": scribbled,
        "seed": seed,
        "simulation": repr(simulation),
    }
    manifest_path = os.path.join(root, "sample.json")
    if not force and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("key") == key:
            logger.info(f"{root} is up to date")
            write_dataset_conf(os.path.join(root, "studies"), dataset_conf)
            return manifest

    convention = ScribbleConvention(labels)
    cases = make_cases(n, seed)
    n_scribbled = scribbled if scribbled is not None else min(len(cases) - 1, int(round(0.6 * len(cases))))
    studies = os.path.join(root, "studies")
    manifest = {"key": key, "labels": labels, "convention": convention.describe(), "cases": {}}
    written = []
    for i, (case_id, volume) in enumerate(cases):
        write_case(root, case_id, volume)
        written.append((case_id, volume))
        manifest["cases"][case_id] = {
            "shape": list(volume.image.shape),
            "spacing": list(volume.spacing),
            "scribbled": i < n_scribbled,
        }

    datastore = studies_datastore(studies)
    for i, (case_id, volume) in enumerate(written[:n_scribbled]):
        cov = save_scribbles(datastore, case_id, volume, convention, seed + i, simulation)
        manifest["cases"][case_id]["coverage"] = {k: round(v, 4) for k, v in cov.items()}
    write_dataset_conf(studies, dataset_conf)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest
