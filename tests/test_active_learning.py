"""Active learning through the real server: next_to_scribble falls back to random before any
model, never serves the same volume to two concurrent clients, a training starts after K scribble
submissions, and once scored it serves the most uncertain volume and says why."""

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import nibabel as nib
import numpy as np
import pytest

from lib.datasets.sample import label_info
from lib.scribbles.simulate import simulate_scribbles
from live_server import TINY_TRAINING, LiveServer, copy_app

K = 2
TRAIN = TINY_TRAINING


@pytest.fixture(scope="module")
def al_server(tmp_path_factory, sample_root):
    work = str(tmp_path_factory.mktemp("al"))
    studies = shutil.copytree(os.path.join(sample_root, "studies"), os.path.join(work, "studies"))
    app = copy_app(os.path.join(work, "app"))
    conf = {
        "models": "pce",
        "al_retrain_after": str(K),
        "al_retrain_params": json.dumps(TRAIN),
        "al_passes": "4",
        "al_exclusion_minutes": "10",
    }
    with LiveServer(app, studies, conf=conf, workdir=work) as s:
        s.studies = studies
        yield s


def _start_scoring(server, timeout=300):
    """POST /scoring/next_to_scribble, retrying while another scoring run is going (429)."""
    deadline = time.time() + timeout
    while True:
        req = urllib.request.Request(
            f"{server.url}/scoring/next_to_scribble",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code != 429 or time.time() > deadline:
                raise
            time.sleep(1)


def _wait_for_scores(client, ids, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        infos = {k: v["image"]["info"] for k, v in client.datastore()["objects"].items()}
        if all("scribble_uncertainty" in infos.get(i, {}) for i in ids):
            return infos
        time.sleep(1)
    raise TimeoutError(f"no scores for {ids}")


def _scribbles(sample_root, case, convention, path):
    truth = nib.load(os.path.join(sample_root, "groundtruth", f"{case}.nii.gz"))
    s = simulate_scribbles(np.asarray(truth.dataobj), truth.header.get_zooms()[:3], convention, seed=9)
    nib.save(nib.Nifti1Image(s.astype(np.uint8), truth.affine), str(path))
    return str(path)


def test_before_any_model_it_falls_back_to_random_and_says_why(al_server):
    reply = al_server.client().next_sample("next_to_scribble", {})
    assert reply["id"] in {"case_003", "case_004", "case_005"}
    assert reply["fallback"] == "random" and "'pce' is not trained yet" in reply["reason"]


def test_two_concurrent_clients_never_get_the_same_volume(al_server):
    replies = []

    def ask(name):
        replies.append(al_server.client(name).next_sample("next_to_scribble", {})["id"])

    threads = [threading.Thread(target=ask, args=(f"annotator_{i}",)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(replies) == 2 and replies[0] != replies[1], replies


def test_a_training_starts_after_k_scribble_submissions(al_server, sample_root, convention, tmp_path):
    client = al_server.client()
    first = client.save_label(
        "case_003",
        _scribbles(sample_root, "case_003", convention, tmp_path / "a.nii.gz"),
        params={"label_info": label_info(convention)},
    )
    assert first["retraining"]["pending_scribbles"] == 1 and first["retraining"]["starts_after"] == K
    assert not client.train_status(check_if_running=True)
    second = client.save_label(
        "case_004",
        _scribbles(sample_root, "case_004", convention, tmp_path / "b.nii.gz"),
        params={"label_info": label_info(convention)},
    )
    assert second["retraining"] == {"started": "pce", "after_scribbles": K}
    deadline = time.time() + 300
    while time.time() < deadline and (client.train_status() or {}).get("status") not in ("DONE", "ERROR"):
        time.sleep(1)
    assert client.train_status()["status"] == "DONE"
    assert os.path.exists(os.path.join(al_server.studies, "..", "app", "model", "pce.pt"))
    # the finished training refreshes the scores by itself: no request needed
    infos = _wait_for_scores(client, ["case_005"])
    assert infos["case_005"]["scribble_uncertainty"]["model"] == "pce"
    # the dropout passes ran on the predicted foreground's box, never more than the volume
    assert 0 < infos["case_005"]["scribble_uncertainty"]["box_fraction"] <= 1


def test_once_scored_it_serves_the_most_uncertain_volume(al_server, sample_root, tmp_path):
    client = al_server.client()
    # a volume unlike the training data: intensities inverted
    p = nib.load(os.path.join(al_server.studies, "case_001.nii.gz"))
    inverted = (np.asarray(p.dataobj).max() - np.asarray(p.dataobj)).astype(np.int16)
    nib.save(nib.Nifti1Image(inverted, p.affine), str(tmp_path / "odd.nii.gz"))
    client.upload_image(str(tmp_path / "odd.nii.gz"), image_id="odd_volume")
    _start_scoring(al_server)  # scores only what is not current: the new volume
    infos = _wait_for_scores(client, ["case_005", "odd_volume"])
    scores = {i: infos[i]["scribble_uncertainty"]["score"] for i in ("case_005", "odd_volume")}
    assert all(np.isfinite(v) for v in scores.values())
    assert all("scribble_features" in infos[i] for i in infos)  # every image, scribbled ones included
    reply = client.next_sample("next_to_scribble", {"client_id": "annotator_3"})
    assert reply["id"] in scores and "highest uncertainty" in reply["reason"], reply
    assert reply["score"] == pytest.approx(scores[reply["id"]])
    # only the new volume was scored, and a request with nothing new says so instead of rescoring
    assert "model 'pce' changed: scoring 1 unlabelled volumes" in _log(al_server)
    _start_scoring(al_server)
    deadline = time.time() + 120
    while time.time() < deadline and "are current for model 'pce': nothing to score" not in _log(al_server):
        time.sleep(1)
    assert "are current for model 'pce': nothing to score" in _log(al_server)
    assert "Failed To Trigger" not in _log(al_server)


def _log(server):
    with open(server.log_path, errors="replace") as f:
        return f.read()
