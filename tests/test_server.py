"""End to end through the real ``monailabel start_server`` and ``MONAILabelClient`` (the REST calls
3D Slicer makes): info, next_sample, upload_image, save_label, datastore, download_label."""

import filecmp
import json
import os

import nibabel as nib
import numpy as np
import pytest
from monailabel.client.client import MONAILabelClientException

from lib.datasets.phantoms import make_cardiac_phantom
from lib.datasets.sample import label_info
from lib.scribbles.convention import to_scribble_map
from lib.scribbles.simulate import simulate_scribbles
from live_server import LiveServer, copy_app


def _unlabeled(server):
    ds = server.client().datastore()
    return sorted(k for k, v in ds["objects"].items() if "final" not in v["labels"])


def test_info_lists_labels_strategies_and_convention(server):
    info = server.client().info()
    assert info["name"] == "scribble_seg"
    assert info["labels"] == ["lv", "myocardium", "rv"]  # names in id order, as OHIF reads them
    assert {"random", "first"} <= set(info["strategies"])
    assert info["scribbles"] == {
        "unannotated": 0,
        "labels": {"lv": 1, "myocardium": 2, "rv": 3},
        "background_scribble": 4,
        "background_segment_names": ["background", "background_scribbles", "background_strokes"],
        "tag": "final",
    }
    assert "config" not in info  # the Slicer module refuses servers whose info has a top-level "config"
    assert info["datastore"]["total"] == 6 and info["datastore"]["completed"] == 3


def test_datastore_holds_scribbles_with_label_info_and_no_ground_truth(server):
    ds = server.client().datastore()
    assert sorted(ds["objects"]) == [f"case_{i:03d}" for i in range(6)]
    for case in ("case_000", "case_001", "case_002"):
        info = ds["objects"][case]["labels"]["final"]["info"]
        assert info["label_info"][-1] == {"name": "background", "id": 4}
    assert not os.path.exists(os.path.join(server.studies, "groundtruth"))
    assert all(set(v["labels"]) <= {"final"} for v in ds["objects"].values())


def test_next_sample_first_and_random_return_unlabeled_volumes(server):
    client = server.client()
    unlabeled = _unlabeled(server)
    first = client.next_sample("first", {})
    assert first["id"] == unlabeled[0]
    assert os.path.exists(first["path"])
    picks = {client.next_sample("random", {})["id"] for _ in range(5)}
    assert picks <= set(unlabeled)


def test_upload_save_scribbles_download_byte_identical(server, tmp_path, convention):
    client = server.client()
    vol = make_cardiac_phantom(seed=101)
    image_path = str(tmp_path / "uploaded.nii.gz")
    nib.save(nib.Nifti1Image(vol.image.astype(np.int16), vol.affine), image_path)
    assert client.upload_image(image_path, image_id="uploaded_101") == {"image": "uploaded_101"}
    assert server.get_bytes("/datastore/image?image=uploaded_101") == open(image_path, "rb").read()
    assert "uploaded_101" in _unlabeled(server)

    scribbles = simulate_scribbles(vol.label, vol.spacing, convention, seed=7)
    label_path = str(tmp_path / "scribbles.nii.gz")
    nib.save(nib.Nifti1Image(scribbles.astype(np.uint8), vol.affine), label_path)
    res = client.save_label("uploaded_101", label_path, params={"label_info": label_info(convention)})
    assert res["image"] == "uploaded_101" and res["label"] == "uploaded_101"

    # the label comes back byte-identical, with its label_info, and the volume is now labeled
    downloaded = client.download_label("uploaded_101", "final")
    assert filecmp.cmp(downloaded, label_path, shallow=False)
    info = client.datastore()["objects"]["uploaded_101"]["labels"]["final"]["info"]
    assert info["label_info"] == label_info(convention) and info["client_id"] == "pytest"
    assert "uploaded_101" not in _unlabeled(server)
    assert client.info()["datastore"]["completed"] == 4

    # read back through the convention: exactly the strokes that were sent
    back = to_scribble_map(np.asarray(nib.load(downloaded).dataobj), convention, info["label_info"])
    np.testing.assert_array_equal(back, scribbles)


def test_save_label_under_another_tag_keeps_the_volume_unlabeled(server, tmp_path):
    client = server.client()
    target = _unlabeled(server)[-1]
    shape = nib.load(os.path.join(server.studies, f"{target}.nii.gz")).shape
    label = np.zeros(shape, np.uint8)
    label[80, 80, 8] = 1
    path = str(tmp_path / "s.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), path)
    client.save_label(target, path, tag="scribbles_draft")
    assert filecmp.cmp(client.download_label(target, "scribbles_draft"), path, shallow=False)
    assert target in _unlabeled(server)
    assert client.info()["datastore"]["label_tags"]["scribbles_draft"] == 1


def test_download_of_a_missing_label_is_404(server):
    with pytest.raises(MONAILabelClientException) as e:
        server.client().download_label("case_005", "final")
    assert e.value.status_code == 404


def test_conf_labels_and_background_id_reach_info(tmp_path, sample_root):
    """Custom labels / background-scribble id through --conf, as a deployment would set them."""
    import shutil

    studies = shutil.copytree(os.path.join(sample_root, "studies"), tmp_path / "studies")
    app = copy_app(str(tmp_path / "app"))
    conf = {"labels": json.dumps({"lv": 1, "myocardium": 2, "rv": 3}), "background_scribble_id": "9"}
    with LiveServer(app, str(studies), conf=conf, workdir=str(tmp_path)) as s:
        assert s.client().info()["scribbles"]["background_scribble"] == 9


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"labels": '{"lv": 1, "rv": 1}'}, "label ids must be 1..K"),
        ({"infer_in_worker": "maybe"}, "conf infer_in_worker must be true or false"),
        ({"al_passes": "many"}, "conf al_passes must be a whole number, at least 2, got 'many'"),
        ({"al_margin_mm": "wide"}, "conf al_margin_mm must be a number, at least 0, got 'wide'"),
        ({"background_niceness": "20"}, "conf background_niceness must be a whole number in 0..19, got '20'"),
        ({"patch_size": "[96, 96]"}, "conf patch_size must be a JSON list of 3 positive numbers, got '[96, 96]'"),
    ],
)
def test_bad_conf_stops_start_up_with_a_clear_message(tmp_path, sample_root, conf, message):
    app = copy_app(str(tmp_path / "app"))
    with pytest.raises(RuntimeError) as e:
        LiveServer(app, os.path.join(sample_root, "studies"), conf=conf, workdir=str(tmp_path), timeout=120)
    assert message in str(e.value)
