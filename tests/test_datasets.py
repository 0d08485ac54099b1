"""The embedded phantoms, the importers of real data and the studies builder."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from lib.datasets.importers import itk_examples_dir, load_citi168, load_itk_brain
from lib.datasets.phantoms import PHANTOM_LABELS, make_cardiac_phantom
from lib.datasets.sample import build_studies
from lib.scribbles.convention import ScribbleConvention, to_scribble_map


def test_phantom_is_deterministic_anisotropic_and_varied():
    a, b, c = make_cardiac_phantom(0), make_cardiac_phantom(0), make_cardiac_phantom(1)
    assert a.image.shape == (160, 160, 16) and a.spacing == (1.5, 1.5, 8.0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.label, c.label)
    assert a.affine[2, 2] == 8.0


def test_phantom_anatomy():
    for seed in range(5):
        p = make_cardiac_phantom(seed)
        counts = np.bincount(p.label.ravel(), minlength=4)
        assert all(counts[1:] > 500), counts
        with_heart = np.flatnonzero((p.label > 0).any(axis=(0, 1)))
        assert 6 <= len(with_heart) < 16  # slices above the base / below the apex have no heart
        apex = p.label[..., with_heart[-1]]
        assert not (apex == 3).any()  # the RV ends before the apex
        # myocardium encloses the LV in-plane: the LV never touches background or RV
        ring = ndimage.binary_dilation(p.label == 1, structure=np.ones((3, 3, 1))) & (p.label != 1)
        assert set(np.unique(p.label[ring])) <= {2}
        # bSSFP contrast: bright blood, dark myocardium
        assert p.image[p.label == 1].mean() > 2 * p.image[p.label == 2].mean()


def test_citi168_hippocampus_from_the_hippunfold_wheel():
    v = load_citi168("L")
    assert v.spacing == (0.6, 0.6, 1.2)
    assert set(np.unique(v.label)) == {0, 1}
    assert 0.05 < v.label.mean() < 0.6  # cropped around the hippocampus
    assert v.image[v.label == 1].std() > 0
    with pytest.raises(ValueError, match="hemi"):
        load_citi168("X")


def test_itk_brain_from_the_debian_examples(tmp_path):
    data_dir = itk_examples_dir(str(tmp_path / "itk"))  # apt fetches the Debian package: never skipped
    v = load_itk_brain(data_dir)
    assert v.image.shape == (128, 128, 62) and v.spacing == (2.0, 2.0, 3.0)
    assert 0.05 < v.label.mean() < 0.3
    assert v.image[v.label == 1].mean() > v.image[v.label == 0].mean()


def test_build_studies_keeps_ground_truth_out_of_the_datastore(tmp_path, convention):
    root = str(tmp_path / "s")
    m = build_studies(root, "phantoms", n=3, scribbled=2, seed=5)
    listed = sorted(f for f in os.listdir(os.path.join(root, "studies")) if f != ".lock")  # the datastore's lock
    assert listed == [
        "case_000.nii.gz",
        "case_001.nii.gz",
        "case_002.nii.gz",
        "datastore_v2.json",
        "labels",
        "scribble_seg.json",  # the dataset's own conf: its labels and anatomy (PHANTOM_CONF)
    ]
    assert json.load(open(os.path.join(root, "studies", "scribble_seg.json")))["labels"] == PHANTOM_LABELS
    assert sorted(os.listdir(os.path.join(root, "studies", "labels", "final"))) == [
        "case_000.nii.gz",
        "case_001.nii.gz",
    ]
    assert m["labels"] == PHANTOM_LABELS
    ds = json.load(open(os.path.join(root, "studies", "datastore_v2.json")))
    for case in ("case_000", "case_001"):
        info = ds["objects"][case]["labels"]["final"]["info"]["label_info"]
        scr = np.asarray(nib.load(os.path.join(root, "studies", "labels", "final", f"{case}.nii.gz")).dataobj)
        truth = np.asarray(nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz")).dataobj)
        idx, ann = convention.targets(to_scribble_map(scr, convention, info))
        assert np.array_equal(idx[ann], truth[ann])  # the stored strokes agree with the ground truth
        assert 0.03 < m["cases"][case]["coverage"]["structures"] < 0.12
    image = nib.load(os.path.join(root, "studies", "case_000.nii.gz"))
    assert image.header.get_zooms() == (1.5, 1.5, 8.0) and image.get_data_dtype() == np.int16


def test_build_studies_is_idempotent_and_rebuilds_on_change(tmp_path):
    root = str(tmp_path / "s")
    build_studies(root, "phantoms", n=2, scribbled=1)
    path = os.path.join(root, "studies", "case_000.nii.gz")
    stamp = os.stat(path).st_mtime_ns
    build_studies(root, "phantoms", n=2, scribbled=1)
    assert os.stat(path).st_mtime_ns == stamp
    build_studies(root, "phantoms", n=2, scribbled=1, seed=9)
    assert os.stat(path).st_mtime_ns != stamp
    with pytest.raises(ValueError, match="unknown source"):
        build_studies(root, "nope")


def test_real_data_builds_with_its_own_labels(tmp_path):
    m = build_studies(str(tmp_path / "h"), "citi168")
    assert m["labels"] == {"hippocampus": 1}
    assert [c["scribbled"] for c in m["cases"].values()] == [True, False]
    assert 0.02 < m["cases"]["citi168_L"]["coverage"]["hippocampus"] < 0.3
    conv = ScribbleConvention(m["labels"])
    assert m["convention"]["background_scribble"] == conv.background_scribble_id == 2
