"""``weaknet`` through the real server: surface points saved under tag ``points`` (a label map of
clicked voxels, or JSON in the label's params), bad points refused with the reason and nothing
stored, then train and infer."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from monailabel.client.client import MONAILabelClientException
from test_server_training import TINY

from lib.scribbles.template import surface_points
from live_server import http_status, wait_for_training

CLASSES = {1: "lv", 3: "rv"}


def _points(sample_root, case, n=12):
    truth = nib.load(os.path.join(sample_root, "groundtruth", f"{case}.nii.gz"))
    t = np.asarray(truth.dataobj)
    return truth, {c: surface_points(t == c, truth.header.get_zooms()[:3], n, seed=1) for c in CLASSES}


def test_points_then_weaknet_train_and_infer(server, sample_root, tmp_path):
    client = server.client()
    # case_003 as a label map of clicked voxels
    truth, pts = _points(sample_root, "case_003")
    clicks = np.zeros(truth.shape, np.uint8)
    for c, p in pts.items():
        clicks[tuple(p.T)] = c
    nib.save(nib.Nifti1Image(clicks, truth.affine), str(tmp_path / "clicks.nii.gz"))
    client.save_label("case_003", str(tmp_path / "clicks.nii.gz"), tag="points")
    # case_004 as JSON (the label map itself empty)
    truth, pts = _points(sample_root, "case_004")
    nib.save(nib.Nifti1Image(np.zeros(truth.shape, np.uint8), truth.affine), str(tmp_path / "empty.nii.gz"))
    client.save_label(
        "case_004",
        str(tmp_path / "empty.nii.gz"),
        tag="points",
        params={"points": {CLASSES[c]: p.tolist() for c, p in pts.items()}},
    )

    # three points for a structure, or a point outside the volume: refused, nothing stored
    before = json.dumps(client.datastore(), sort_keys=True)
    for bad, message in (
        ({"lv": pts[1][:3].tolist()}, "at least 4 surface points; got 3 for 'lv'"),
        ({"lv": pts[1].tolist() + [[500, 0, 0]]}, "outside the"),
    ):
        with pytest.raises(MONAILabelClientException) as e:
            client.save_label("case_005", str(tmp_path / "empty.nii.gz"), tag="points", params={"points": bad})
        assert http_status(e.value) == 422 and message in e.value.msg
    assert json.dumps(client.datastore(), sort_keys=True) == before

    task = client.train_start("weaknet", {**TINY, "val_split": 0.0, "max_epochs": 2})
    assert task["status"] in ("SUBMITTED", "RUNNING")
    status = wait_for_training(client)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))
    stats = client.info()["train_stats"]["weaknet"]
    assert stats["total_epochs"] == 2
    templates = os.path.join(server.app_dir, "model", "weaknet", "templates")
    assert sorted(os.listdir(templates)) == ["case_003.nii.gz", "case_004.nii.gz"]
    template = np.asarray(nib.load(os.path.join(templates, "case_004.nii.gz")).dataobj)
    truth = np.asarray(nib.load(os.path.join(sample_root, "groundtruth", "case_004.nii.gz")).dataobj)
    lv = 2 * ((template == 1) & (truth == 1)).sum() / ((template == 1).sum() + (truth == 1).sum())
    assert lv > 0.8  # the template from 12 points already outlines the LV

    result, _ = client.infer("weaknet", "case_005", {})
    out = nib.load(result)
    assert out.shape == truth.shape and set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 3}
