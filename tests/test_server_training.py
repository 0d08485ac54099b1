"""Train ``pce`` through the real server (POST /train/pce in a subprocess, as Slicer's Train
button does), then infer: a label volume of the input's shape and geometry."""

import os
import time

import nibabel as nib
import numpy as np
import psutil
import pytest
from monailabel.client.client import MONAILabelClientException
from scipy import ndimage

from live_server import TINY_TRAINING, http_status, wait_for_training

TINY = {**TINY_TRAINING, "val_split": 0.34}


def test_info_lists_the_recipes_but_not_the_benchmark_only_full(server):
    info = server.client().info()
    assert info["models"]["pce"]["type"] == info["models"]["scribble2d5"]["type"] == "segmentation"
    assert info["models"]["crf"]["type"] == info["models"]["random_walk"]["type"] == "scribbles"
    assert info["models"]["pce"]["labels"] == {"lv": 1, "myocardium": 2, "rv": 3}
    assert "pce" in info["trainers"] and "full" not in info["trainers"] and "full" not in info["models"]
    assert info["trainers"]["pce"]["config"]["patch_size"] == [96, 96, 16]
    # Scribble2D5 and the 2D recipes keep the components bordering the myocardium (components*.md); the others per class
    for anchored in ("scribble2d5", "exmod", "zscribbleseg"):
        assert info["models"][anchored]["config"]["largest_component"] == "myocardium"
    for per_class in ("pce", "can_em"):
        assert info["models"][per_class]["config"]["largest_component"] == "true"


def test_infer_before_training_says_which_train_to_run(server):
    with pytest.raises(MONAILabelClientException) as e:
        server.client().infer("pce", "case_004", {})
    assert http_status(e.value) == 409
    assert "has not been trained yet: run POST /train/pce" in e.value.msg


@pytest.mark.parametrize("recipe", ["pce", "scribble2d5", "exmod", "zscribbleseg"])
def test_train_then_infer_restores_the_input_geometry(server, sample_root, recipe):
    client = server.client()
    task = client.train_start(recipe, {**TINY, "gt_dir": os.path.join(sample_root, "groundtruth")})
    assert task["status"] in ("SUBMITTED", "RUNNING")
    status = wait_for_training(client)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))

    stats = client.info()["train_stats"][recipe]
    assert stats["total_epochs"] == 1 and "val_scribble_dice" in stats["eval"]["metrics"]
    assert "val_dice" in stats["eval"]["metrics"]  # dense truth given through gt_dir: validation only
    if recipe == "zscribbleseg":  # EM ran (prior from epoch 1 in the fixture's conf) and reports its ratios
        ratios = stats["mixture_ratios"]
        assert len(ratios["estimated"]) == 4 and sum(ratios["estimated"]) == pytest.approx(1.0, abs=1e-3)

    result, params = client.infer(recipe, "case_004", {})
    out, image = nib.load(result), nib.load(os.path.join(server.studies, "case_004.nii.gz"))
    assert out.shape == image.shape
    np.testing.assert_allclose(out.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 3}
    assert params["label_names"] == {"lv": 1, "myocardium": 2, "rv": 3}
    if recipe == "pce":  # the component clean-up is a request parameter too; a wrong one answers 422
        raw, anchored = (
            np.asarray(nib.load(client.infer(recipe, "case_004", {"largest_component": mode})[0]).dataobj)
            for mode in ("false", "myocardium")
        )
        assert ((anchored == 0) | (anchored == raw)).all()  # it only removes
        pieces = [ndimage.label(raw == c)[1] for c in (1, 2, 3)]
        assert all(ndimage.label(anchored == c)[1] <= 1 for c in (1, 2, 3))
        assert max(pieces) > 1 and not np.array_equal(anchored, raw)  # a 3-iteration model's raw map: thousands
        with pytest.raises(MONAILabelClientException) as e:
            client.infer(recipe, "case_004", {"largest_component": "spleen"})
        assert http_status(e.value) == 422 and "myocardium" in e.value.msg and "spleen" in e.value.msg


def test_training_without_scribbles_fails_with_a_message(tmp_path, sample_root):
    """A datastore without any scribble: the train task ends in ERROR and says why."""
    import shutil

    from live_server import LiveServer, copy_app

    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(os.path.join(sample_root, "studies", "case_004.nii.gz"), studies)
    app = copy_app(str(tmp_path / "app"))
    conf = {"models": "pce", "labels": '{"lv": 1, "myocardium": 2, "rv": 3}'}
    with LiveServer(app, str(studies), conf=conf, workdir=str(tmp_path)) as s:
        client = s.client()
        client.train_start("pce", TINY)
        status = wait_for_training(client)
        assert status["status"] == "ERROR"
        assert any("no volume in the datastore has scribbles under tag 'final'" in line for line in status["details"])
        assert client.info()["name"] == "scribble_seg"  # the server is still up


def test_stopping_a_training_keeps_the_published_model_and_the_next_one_starts(server):
    """DELETE /train/ mid-epoch: the published model still serves, a new training runs to DONE."""
    client = server.client()
    published = os.path.join(server.app_dir, "model", "pce.pt")
    assert os.path.exists(published)  # published by the training test above
    client.train_start("pce", {**TINY, "max_epochs": 100, "epoch_length": 50})
    deadline = time.time() + 120
    while time.time() < deadline and not client.train_status(check_if_running=True):
        time.sleep(0.5)
    time.sleep(8)  # inside the first epochs
    # the training subprocess yields the CPU to the server's requests (conf background_niceness)
    processes = [psutil.Process(server.proc.pid)] + psutil.Process(server.proc.pid).children(recursive=True)
    training = [p for p in processes if "monailabel.interfaces.utils.app" in " ".join(p.cmdline())]
    serving = [p for p in processes if p not in training]

    def niceness(p):  # of every thread: torch's pools too
        return {os.getpriority(os.PRIO_PROCESS, t.id) for t in p.threads()}

    assert training and set().union(*map(niceness, training)) == {processes[0].nice() + 10}
    assert set().union(*map(niceness, serving)) == {processes[0].nice()}
    # a second training is refused with what runs and how to stop it
    with pytest.raises(MONAILabelClientException) as e:
        client.train_start("pce", TINY)
    assert http_status(e.value) == 429
    assert "training 'pce' is already running since" in e.value.msg, e.value.msg
    assert "DELETE /train/" in e.value.msg and "enqueue=true" in e.value.msg
    stopped = client.train_stop()
    assert stopped["status"] == "STOPPED"
    assert not client.train_status(check_if_running=True)
    result, _ = client.infer("pce", "case_004", {})  # a partial weights file would answer 409 here
    assert nib.load(result).shape == (160, 160, 16)
    client.train_start("pce", TINY)
    assert wait_for_training(client)["status"] == "DONE"


def test_a_corrupt_model_file_answers_409_and_the_server_stays_up(server):
    client = server.client()
    published = os.path.join(server.app_dir, "model", "pce.pt")
    good = open(published, "rb").read()
    try:
        with open(published, "wb") as f:
            f.write(good[: len(good) // 2])  # a partial copy
        with pytest.raises(MONAILabelClientException) as e:
            client.infer("pce", "case_004", {})
        assert http_status(e.value) == 409 and "cannot be loaded" in e.value.msg and "POST /train/pce" in e.value.msg
        assert client.info()["name"] == "scribble_seg"
    finally:
        with open(published, "wb") as f:
            f.write(good)
    result, _ = client.infer("pce", "case_004", {})  # restored: serves again
    assert nib.load(result).shape == (160, 160, 16)


def test_concurrent_clients_are_all_answered_and_no_label_is_lost(server, sample_root, tmp_path, convention):
    """4 threads x 6 requests mixing infer crf / infer pce / next_sample / save_label / info."""
    from lib.datasets.sample import label_info
    from lib.scribbles.simulate import simulate_scribbles
    from load_driver import run_load

    images, scribbles = ["case_003", "case_004", "case_005"], {}
    for case in images:
        truth_img = nib.load(os.path.join(sample_root, "groundtruth", f"{case}.nii.gz"))
        strokes = simulate_scribbles(
            np.asarray(truth_img.dataobj), truth_img.header.get_zooms()[:3], convention, seed=5
        )
        scribbles[case] = str(tmp_path / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(strokes.astype(np.uint8), truth_img.affine), scribbles[case])
    summary = run_load(
        server.url, images, scribbles, label_info(convention), "pce", str(tmp_path), threads=4, per_thread=6
    )
    assert summary["requests"] == 24 and summary["status_counts"] == {"200": 24}, summary
    assert summary["labels_saved"] > 0 and summary["labels_verified"] == summary["labels_saved"]
    assert summary["labels_lost"] == 0 and set(summary["operations"]) == {
        "infer_crf",
        "infer_model",
        "next_sample",
        "save_label",
        "info",
    }


def test_a_training_refreshes_the_scores_once_without_an_error_in_the_log(tmp_path, sample_root):
    """With MONAI Label's default auto-update of scores, the refresh after a training is requested
    once: a second request met the running one (429) and logged "[ERROR] Failed To Trigger"."""
    import shutil

    from live_server import LiveServer, copy_app

    app = copy_app(str(tmp_path / "app"))
    studies = shutil.copytree(os.path.join(sample_root, "studies"), str(tmp_path / "studies"))
    with LiveServer(
        app,
        studies,
        conf={"models": "pce", "al_model": "pce", "al_passes": "2"},
        workdir=str(tmp_path),
        env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "true"},
    ) as server:
        client = server.client()
        client.train_start("pce", TINY)
        assert wait_for_training(client)["status"] == "DONE"
        deadline = time.time() + 120  # the scoring subprocess ran for the new weights
        while time.time() < deadline and "next_to_scribble" not in open(server.log_path, errors="replace").read():
            time.sleep(1)
        time.sleep(5)
        log = open(server.log_path, errors="replace").read()
        assert "Failed To Trigger" not in log


def test_update_model_without_a_model_trains_the_one_recipe(tmp_path, sample_root):
    """OHIF's Update Model sends ``POST /train/`` naming no model; MONAI Label's endpoint then trains every
    trainer in a row. Here it trains conf ``al_recipe`` alone, with ``params[recipe]`` checked."""
    import json
    import shutil
    import urllib.error
    import urllib.request

    from live_server import LiveServer, copy_app

    app = copy_app(str(tmp_path / "app"))
    studies = shutil.copytree(os.path.join(sample_root, "studies"), str(tmp_path / "studies"))
    conf = {"models": "pce,scribble2d5", "al_recipe": "pce"}
    with LiveServer(app, studies, conf=conf, workdir=str(tmp_path)) as server:

        def post(body):
            req = urllib.request.Request(
                f"{server.url}/train/", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, reply = post({"pce": {**TINY, "max_epochs": "many"}})
        assert status == 422 and "max_epochs" in reply["detail"], reply
        status, reply = post({"unet": TINY})
        assert status == 422 and "unet" in reply["detail"], reply
        status, reply = post({"pce": TINY})
        assert status == 200 and list(reply) == ["pce"], reply
        client = server.client()
        assert wait_for_training(client)["status"] == "DONE"
        trained = {m for m in ("pce", "scribble2d5") if os.path.exists(os.path.join(app, "model", f"{m}.pt"))}
        assert trained == {"pce"}
