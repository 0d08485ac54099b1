"""The ``random`` strategy (lib/activelearning/random.py) on a real LocalDatastore: its draws do
not depend on Python's global random state, which every seeded training resets
(``monai.utils.set_determinism``), and it never serves a scribbled volume."""

import random

import nibabel as nib
import numpy as np
from monailabel.datastore.local import LocalDatastore

from lib.activelearning import Random


def _datastore(root, n):
    for i in range(n):
        nib.save(nib.Nifti1Image(np.full((4, 4, 2), i, np.int16), np.eye(4)), str(root / f"case_{i:03d}.nii.gz"))
    return LocalDatastore(str(root), extensions=("*.nii.gz",), auto_reload=False)


def test_picks_vary_when_the_global_random_state_is_reset_before_every_draw(tmp_path):
    datastore = _datastore(tmp_path, 12)
    label = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.uint8), np.eye(4)), str(label))
    datastore.save_label("case_011", str(label), "final", {})
    strategy = Random(seed=0)
    picks = []
    for _ in range(20):
        random.seed(0)  # what a seeded training between two draws does to the global state
        picks.append(strategy({}, datastore)["id"])
    # 20 uniform draws from 11 volumes: >= 6 distinct ids except with probability < 1e-4; drawn
    # from the global state, every draw returned the same id
    assert len(set(picks)) >= 6, picks
    assert "case_011" not in picks
    assert Random(seed=3)({}, datastore)["id"] == Random(seed=3)({}, datastore)["id"]  # seeded: reproducible
