"""Serving your own folder the way the README says: ``make serve STUDIES=... LABELS=...``.

The server is started by the Makefile's own command (not by :class:`live_server.LiveServer`), on a
folder of NIfTI and NRRD volumes in different orientations, with JSON labels that hold spaces.
"""

import json
import os
import signal
import subprocess
import time

import nibabel as nib
import nrrd
import numpy as np
from monailabel.client import MONAILabelClient

from live_server import QUIET_ENV, free_port, wait_for_training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _volume(seed):
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 50, (40, 36, 12)).astype(np.int16)
    image[10:30, 8:28, 3:9] += 300
    return image


def test_make_serve_on_your_own_folder_with_labels_that_hold_spaces(tmp_path):
    studies = tmp_path / "my studies"  # a space in the path too
    studies.mkdir()
    ras = np.diag([0.8, 0.8, 3.0, 1.0])
    lps = np.diag([-0.8, -0.8, 3.0, 1.0])  # the DICOM orientation, as converters write it
    nib.save(nib.Nifti1Image(_volume(0), ras), str(studies / "chest_ras.nii.gz"))
    nib.save(nib.Nifti1Image(_volume(1), lps), str(studies / "chest_lps.nii.gz"))
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.8, 0.8, 3.0]),
        "space origin": np.zeros(3),
    }
    nrrd.write(str(studies / "spine.nrrd"), _volume(2), header)
    labels = {"left lung": 1, "spinal cord": 2}
    port = free_port()
    env = {**os.environ, **QUIET_ENV, "MONAI_LABEL_SESSION_PATH": str(tmp_path / "sessions")}
    cmd = ["make", "-s", "serve", f"STUDIES={studies}", f"LABELS={json.dumps(labels)}", f"PORT={port}", "MODELS=pce"]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = MONAILabelClient(f"http://127.0.0.1:{port}")
        deadline, info = time.time() + 180, None
        while time.time() < deadline and proc.poll() is None:
            try:
                info = client.info()
                break
            except Exception:
                time.sleep(1)
        assert info is not None, (tmp_path / "serve.log").read_text()[-3000:]
        assert info["labels"] == list(labels) and info["scribbles"]["labels"] == labels
        assert set(client.datastore()["objects"]) == {"chest_ras", "chest_lps", "spine"}
        # a Slicer-style refinement on the NRRD: strokes on 3 slices come back as the bright box
        node = np.zeros(_volume(2).shape, np.uint8)
        for z in (4, 6, 8):
            node[15:25, 18, z] = 3  # foreground_scribbles
            node[2, 2:34, z] = 2  # background_scribbles
        path = str(tmp_path / "node.nrrd")
        nrrd.write(path, node, header)
        info = [
            {"name": "spinal cord", "id": 1},
            {"name": "background_scribbles", "id": 2},
            {"name": "foreground_scribbles", "id": 3},
        ]
        result, reply = client.infer(
            "random_walk",
            "spine",
            {"label_info": info, "selected_label_name": "spinal cord", "result_extension": ".nrrd"},
            label_in=path,
        )
        mask, _ = nrrd.read(result)
        box = np.zeros(node.shape, bool)
        box[10:30, 8:28, 3:9] = True
        assert mask.shape == node.shape and reply["mode"] == "binary"
        assert 2 * (box & (mask == 1)).sum() / (box.sum() + (mask == 1).sum()) > 0.9
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_a_model_trained_for_other_labels_is_refused_and_retrained_from_fresh_weights(tmp_path, sample_root):
    """One app folder served first with the sample's labels, then with another label set: the
    published model answers 409 naming the fix, and that training starts from fresh weights."""
    import shutil

    from monailabel.client.client import MONAILabelClientException

    from live_server import TINY_TRAINING, LiveServer, copy_app, http_status

    tiny = TINY_TRAINING
    app = copy_app(str(tmp_path / "app"))
    first = shutil.copytree(os.path.join(sample_root, "studies"), str(tmp_path / "sample"))
    with LiveServer(app, first, conf={"models": "pce"}, workdir=str(tmp_path)) as server:
        client = server.client()
        client.train_start("pce", tiny)
        assert wait_for_training(client)["status"] == "DONE"
    trained = json.load(open(os.path.join(app, "model", "pce.json")))
    assert trained["labels"] == {"lv": 1, "myocardium": 2, "rv": 3} and len(trained["target_spacing"]) == 3

    # the same volumes, scribbled for two structures: lv strokes stay 1, myocardium 2, rv strokes
    # dropped, background (4 in the sample's convention) becomes 3
    second = shutil.copytree(first, str(tmp_path / "other"))
    final = os.path.join(second, "labels", "final")
    for name in os.listdir(final):
        img = nib.load(os.path.join(final, name))
        remap = np.array([0, 1, 2, 0, 3], np.uint8)[np.asarray(img.dataobj).astype(np.int64)]
        nib.save(nib.Nifti1Image(remap, img.affine), os.path.join(final, name))
    labels = {"left lung": 1, "spinal cord": 2}
    store = os.path.join(second, "datastore_v2.json")  # the maps' label_info: the new names
    with open(store) as f:
        meta = json.load(f)
    for obj in meta["objects"].values():
        if "final" in obj["labels"]:
            obj["labels"]["final"]["info"]["label_info"] = [
                {"name": n, "id": i} for n, i in [*labels.items(), ("background", 3)]
            ]
    with open(store, "w") as f:
        json.dump(meta, f)
    with LiveServer(app, second, conf={"models": "pce", "labels": json.dumps(labels)}, workdir=str(tmp_path)) as server:
        client = server.client()
        image = sorted(client.datastore()["objects"])[0]
        try:
            client.infer("pce", image, {})
            raise AssertionError("a model trained for other labels was served")
        except MONAILabelClientException as e:
            assert http_status(e) == 409 and "trained for labels" in e.msg and "POST /train/pce" in e.msg
        client.train_start("pce", tiny)
        assert wait_for_training(client)["status"] == "DONE"
        result, _ = client.infer("pce", image, {})
        assert set(np.unique(np.asarray(nib.load(result).dataobj))) <= {0, 1, 2}
    assert json.load(open(os.path.join(app, "model", "pce.json")))["labels"] == labels
