"""``can_em`` through the real server: three recursions on tiny phantoms, per-recursion figures
in the training stats, relabelled maps in the datastore with every scribble kept, then infer."""

import os

import nibabel as nib
import numpy as np
from test_server_training import TINY

from live_server import wait_for_training


def test_can_em_trains_recursively_keeps_the_seeds_and_serves(server, convention):
    client = server.client()
    # epochs_per_recursion overrides the split of max_epochs (6 / 3 would give 2 each)
    task = client.train_start(
        "can_em", {**TINY, "max_epochs": 6, "epochs_per_recursion": 1, "recursions": 3, "mc_passes": 4}
    )
    assert task["status"] in ("SUBMITTED", "RUNNING")
    status = wait_for_training(client)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))

    recursions = client.info()["train_stats"]["can_em"]["recursions"]
    assert [r["recursion"] for r in recursions] == [1, 2, 3] and all(r["epochs"] == 1 for r in recursions)
    for r in recursions[:2]:  # an E step after every recursion but the last
        assert 0.0 < r["relabelled_fraction"] <= 1.0 and 0.0 <= r["changed_fraction"] <= 1.0
        assert r["relabel_seconds_per_volume"] > 0
    # seed areas (first M step) label a part of the volume; the E step's maps label more of it
    assert 0.0 < recursions[0]["labelled_fraction"] < recursions[1]["labelled_fraction"]

    objects = client.datastore()["objects"]
    relabelled = {i: o["labels"]["can_em"] for i, o in objects.items() if "can_em" in o.get("labels", {})}
    assert len(relabelled) == 2  # the training volumes (one of the three scribbled ones validates)
    for image_id, info in relabelled.items():
        assert info["info"]["recursion"] == 2
        image = nib.load(os.path.join(server.studies, f"{image_id}.nii.gz"))
        label = nib.load(os.path.join(server.studies, "labels", "can_em", f"{image_id}.nii.gz"))
        new = np.asarray(label.dataobj).astype(np.int64)
        assert new.shape == image.shape
        np.testing.assert_allclose(label.affine, image.affine, atol=1e-4)
        scribbles = np.asarray(nib.load(os.path.join(server.studies, "labels", "final", f"{image_id}.nii.gz")).dataobj)
        stroke = convention.annotated(scribbles)
        assert stroke.any() and (new[stroke] == scribbles[stroke]).all()  # seeds never change
        assert convention.annotated(new).mean() > 2 * stroke.mean()

    result, params = client.infer("can_em", "case_004", {})
    out = nib.load(result)
    assert out.shape == nib.load(os.path.join(server.studies, "case_004.nii.gz")).shape
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 3}
