"""A new user's first hour, through the real server on a fresh folder of their own.

An empty studies folder and two labels of the user's own; then what an annotator does in Slicer:
upload volumes, ask for the next one, submit scribbles whose segments are named (with Slicer's own
segment ids, not the server's), train with a small budget, run the model, refine its result with
strokes. Every reply is checked, and at the end the datastore holds exactly what was sent: the
uploaded volumes and the submitted scribble maps, byte for byte, with the ``label_info`` they came
with, and nothing else.
"""

import json
import os
import shutil

import nibabel as nib
import numpy as np

from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.simulate import simulate_scribbles
from live_server import TINY_TRAINING, LiveServer, copy_app, wait_for_training

LABELS = {"liver": 1, "spleen": 2}
SPACING = (1.5, 1.5, 4.0)
SHAPE = (64, 64, 16)
# Slicer numbers segments in the order they were added: the ids say nothing, the names say everything
SLICER_IDS = {"spleen": 1, "liver": 2, "background": 3}


def _case(seed):
    """An abdomen-like volume: a large bright organ and a small darker one in soft tissue."""
    rng = np.random.default_rng(seed)
    x, y, z = np.indices(SHAPE)  # NIfTI array axes
    truth = np.zeros(SHAPE, np.uint8)
    cx, cy = 24 + rng.integers(-3, 4), 30 + rng.integers(-3, 4)
    truth[((x - cx) / 14.0) ** 2 + ((y - cy) / 18.0) ** 2 + ((z - 8) / 6.0) ** 2 < 1] = LABELS["liver"]
    truth[((x - 48) / 6.0) ** 2 + ((y - 34) / 9.0) ** 2 + ((z - 8) / 4.0) ** 2 < 1] = LABELS["spleen"]
    image = rng.normal(40, 12, SHAPE) + np.choose(truth, [0.0, 120.0, 60.0])
    return image.astype(np.int16), truth


def _slicer_map(scribbles, convention):
    """The convention's map renumbered with Slicer's segment ids, and the label_info that names them."""
    out = np.zeros(scribbles.shape, np.uint8)
    for name, idx in convention.labels.items():
        out[scribbles == idx] = SLICER_IDS[name]
    out[scribbles == convention.background_scribble_id] = SLICER_IDS["background"]
    return out, [{"name": n, "id": i} for n, i in SLICER_IDS.items()]


def _dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_first_hour_on_a_fresh_folder_of_ones_own(tmp_path):
    studies, upload = tmp_path / "studies", tmp_path / "upload"
    studies.mkdir(), upload.mkdir()
    affine = np.diag([*SPACING, 1.0])
    convention = ScribbleConvention(LABELS)
    cases = {f"patient_{i}": _case(i) for i in range(5)}
    app = copy_app(str(tmp_path / "app"))
    conf = {"models": "pce", "al_model": "pce", "al_passes": "2", "labels": json.dumps(LABELS)}
    with LiveServer(app, str(studies), conf=conf, workdir=str(tmp_path)) as server:
        client = server.client("annotator")
        info = client.info()
        assert info["labels"] == list(LABELS) and info["scribbles"]["labels"] == LABELS
        assert info["datastore"]["total"] == 0

        # upload: each volume stored as sent
        for name, (image, _) in cases.items():
            path = str(upload / f"{name}.nii.gz")
            nib.save(nib.Nifti1Image(image, affine), path)
            assert client.upload_image(path, image_id=name) == {"image": name}
            assert server.get_bytes(f"/datastore/image?image={name}") == open(path, "rb").read()
        assert client.info()["datastore"]["total"] == 5

        # Next Sample before any model: a random unlabelled volume, and the reply says why
        first = client.next_sample("next_to_scribble", {})
        assert first["id"] in cases and first["fallback"] == "random"
        assert "'pce' is not trained yet" in first["reason"]

        # scribbles submitted by name, three volumes
        sent = {}
        for k, name in enumerate([first["id"], *[n for n in cases if n != first["id"]][:2]]):
            strokes = simulate_scribbles(cases[name][1], SPACING, convention, seed=k)
            slicer, label_info = _slicer_map(strokes, convention)
            path = str(upload / f"{name}_scribbles.nii.gz")
            nib.save(nib.Nifti1Image(slicer, affine), path)
            reply = client.save_label(name, path, params={"label_info": label_info})
            assert reply["image"] == name and reply["label"] == name
            sent[name] = (path, label_info)
        assert client.info()["datastore"]["completed"] == 3

        # train with a small budget; the published model records its labels and spacing
        client.train_start("pce", TINY_TRAINING)
        status = wait_for_training(client)
        assert status["status"] == "DONE", status
        record = json.load(open(os.path.join(app, "model", "pce.json")))
        assert record["labels"] == LABELS and len(record["target_spacing"]) == 3

        # the model on a volume nobody scribbled: a label map of this server's labels, on its grid
        target = next(n for n in cases if n not in sent)
        result, reply = client.infer("pce", target, {})
        predicted = np.asarray(nib.load(result).dataobj)
        assert predicted.shape == SHAPE and set(np.unique(predicted)) <= {0, *LABELS.values()}

        # refine the model's liver in Slicer's binary mode: strokes on three axial slices
        truth = cases[target][1]
        liver = truth == LABELS["liver"]
        node = (predicted == LABELS["liver"]).astype(np.uint8)
        strokes = simulate_scribbles(truth, SPACING, convention, seed=11)
        on_slices = np.zeros(SHAPE, bool)
        on_slices[..., [5, 8, 11]] = True
        node[(strokes == LABELS["liver"]) & on_slices] = 3  # foreground_scribbles
        node[(strokes != 0) & (strokes != LABELS["liver"]) & on_slices] = 2  # background_scribbles
        path = str(upload / "node.nii.gz")
        nib.save(nib.Nifti1Image(node, affine), path)
        params = {
            "label_info": [
                {"name": "liver", "id": 1},
                {"name": "background_scribbles", "id": 2},
                {"name": "foreground_scribbles", "id": 3},
            ],
            "selected_label_name": "liver",
        }
        result, reply = client.infer("random_walk", target, params, label_in=path)
        refined = np.asarray(nib.load(result).dataobj) == 1
        assert reply["mode"] == "binary" and reply["prior"] == "segmentation"
        assert np.all(refined[node == 3]) and not np.any(refined[node == 2])  # the strokes hold
        before, after = _dice(predicted == LABELS["liver"], liver), _dice(refined, liver)
        assert after > 0.85 and after > before, (before, after)

        # the datastore holds exactly what was sent
        objects = client.datastore()["objects"]
        assert set(objects) == set(cases)
        for name, obj in objects.items():
            assert set(obj["labels"]) == ({"final"} if name in sent else set()), (name, obj["labels"])
        for name, (path, label_info) in sent.items():
            assert server.get_bytes(f"/datastore/label?label={name}&tag=final") == open(path, "rb").read()
            stored = objects[name]["labels"]["final"]["info"]
            assert stored["label_info"] == label_info and stored["client_id"] == "annotator"
        images = sorted(f for f in os.listdir(studies) if f.endswith(".nii.gz"))
        assert images == sorted(f"{n}.nii.gz" for n in cases)
        assert sorted(os.listdir(studies / "labels" / "final")) == sorted(f"{n}.nii.gz" for n in sent)
    shutil.rmtree(upload)
