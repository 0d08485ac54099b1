"""Bad input through the real server: each case answers a 4xx naming the problem, the server stays
up, and afterwards the datastore holds exactly what it held plus the valid writes."""

import gzip
import hashlib
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from monailabel.client.client import MONAILabelClientException

from lib.datasets.sample import label_info
from lib.scribbles.simulate import simulate_scribbles
from live_server import LiveServer, copy_app, http_status

LIMIT_MB = 2


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, sample_root):
    work = str(tmp_path_factory.mktemp("guarded"))
    studies = shutil.copytree(os.path.join(sample_root, "studies"), os.path.join(work, "studies"))
    app = copy_app(os.path.join(work, "app"))
    with LiveServer(app, studies, conf={"models": "all", "max_upload_mb": str(LIMIT_MB)}, workdir=work) as s:
        s.studies, s.app_dir = studies, app
        yield s


def _snapshot(studies):
    """{relative path: sha1} of every image and label file."""
    out = {}
    for root, _, files in os.walk(studies):
        for f in files:
            if f.endswith((".nii.gz", ".nii", ".nrrd")):
                p = os.path.join(root, f)
                out[os.path.relpath(p, studies)] = hashlib.sha1(open(p, "rb").read()).hexdigest()
    return out


def _nifti(path, array, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return str(path)


def _refused(call, status, message):
    with pytest.raises(MONAILabelClientException) as e:
        call()
    assert http_status(e.value) == status, e.value.msg
    assert message in e.value.msg, e.value.msg


def test_bad_input_is_refused_and_nothing_is_lost(guarded, sample_root, tmp_path, convention):
    client = guarded.client()
    before_files = _snapshot(guarded.studies)
    before_objects = {k: sorted(v["labels"]) for k, v in client.datastore()["objects"].items()}
    image = nib.load(os.path.join(guarded.studies, "case_004.nii.gz"))
    truth = np.asarray(nib.load(os.path.join(sample_root, "groundtruth", "case_004.nii.gz")).dataobj)
    strokes = simulate_scribbles(truth, image.header.get_zooms()[:3], convention, seed=3).astype(np.uint8)
    info = {"label_info": label_info(convention)}

    # labels
    wrong_shape = _nifti(tmp_path / "shape.nii.gz", strokes[:80])
    _refused(lambda: client.save_label("case_004", wrong_shape, params=info), 422, "the label has shape (80, 160, 16)")
    outside = _nifti(tmp_path / "outside.nii.gz", np.where(strokes == 1, 7, strokes).astype(np.uint8), image.affine)
    _refused(lambda: client.save_label("case_004", outside), 422, "values [2, 3, 4, 7] could mean any class")
    _refused(lambda: client.save_label("case_004", outside), 422, "send label_info naming each value")
    empty = _nifti(tmp_path / "empty.nii.gz", np.zeros_like(strokes), image.affine)
    _refused(lambda: client.save_label("case_004", empty, params=info), 422, "are empty: draw at least one stroke")
    unnamed = _nifti(tmp_path / "unnamed.nii.gz", strokes, image.affine)
    liver = [{"name": "liver", "id": 1}] + label_info(convention)[1:]
    _refused(
        lambda: client.save_label("case_004", unnamed, params={"label_info": liver}),
        422,
        "'liver' is not a label of this app",
    )
    _refused(
        lambda: client.save_label("case_004", unnamed, params={"label_info": liver[:1]}),
        422,
        "values [2, 3, 4] that label_info does not describe",
    )
    truncated_label = str(tmp_path / "truncated_label.nii.gz")
    open(truncated_label, "wb").write(open(unnamed, "rb").read()[:300])
    _refused(lambda: client.save_label("case_004", truncated_label, params=info), 422, "not a readable image")
    _refused(lambda: client.save_label("no_such_image", unnamed, params=info), 404, "is not in the datastore")
    _refused(lambda: client.save_label("../case_004", unnamed, params=info), 404, "is not in the datastore")
    _refused(lambda: client.save_label("case_004", unnamed, tag="../final", params=info), 422, "label tag")

    # images
    flat = _nifti(tmp_path / "flat.nii.gz", np.zeros((32, 32), np.int16))
    _refused(lambda: client.upload_image(flat, image_id="flat"), 422, "must be a 3D single-channel volume; got 2D")
    four_d = _nifti(tmp_path / "four.nii.gz", np.zeros((8, 8, 8, 3), np.int16))
    _refused(lambda: client.upload_image(four_d, image_id="four"), 422, "got 4D of shape (8, 8, 8, 3)")
    nans = np.asarray(image.dataobj).astype(np.float32)
    nans[:] = np.nan
    nan_path = _nifti(tmp_path / "nan.nii.gz", nans, image.affine)
    _refused(lambda: client.upload_image(nan_path, image_id="nan_volume"), 422, "holds NaN or Inf values")
    truncated = str(tmp_path / "truncated.nii.gz")
    open(truncated, "wb").write(open(os.path.join(guarded.studies, "case_004.nii.gz"), "rb").read()[:500])
    _refused(lambda: client.upload_image(truncated, image_id="truncated"), 422, "not a readable image")
    text = tmp_path / "notes.nii.gz"
    text.write_bytes(gzip.compress(b"this is not an image"))
    _refused(lambda: client.upload_image(str(text), image_id="notes"), 422, "not a readable image")
    good = _nifti(tmp_path / "good.nii.gz", np.asarray(image.dataobj), image.affine)
    _refused(lambda: client.upload_image(good, image_id="../escape"), 422, "image id '../escape' is not allowed")
    _refused(lambda: client.upload_image(good, image_id="/etc/passwd"), 422, "is not allowed")
    big = _nifti(tmp_path / "big.nii", np.random.default_rng(0).random((128, 128, 40)).astype(np.float32))
    _refused(lambda: client.upload_image(big, image_id="big"), 413, f"above the server's limit of {LIMIT_MB} MB")

    # names that do not exist
    _refused(lambda: client.infer("no_such_model", "case_004", {}), 404, "unknown model 'no_such_model'")
    _refused(lambda: client.infer("pce", "no_such_image", {}), 404, "image 'no_such_image' is not in the datastore")
    _refused(lambda: client.next_sample("no_such_strategy", {}), 404, "unknown strategy 'no_such_strategy'")
    _refused(lambda: client.train_start("no_such_model", {}), 404, "unknown model 'no_such_model'")

    # inference parameters every model shares, refused before any inference runs (pce is not
    # trained here: the parameter is named before the model's own 409)
    shared = [
        (
            "result_extension",
            ".xyz",
            "result_extension must be one of .nii.gz, .nii, .nrrd, .seg.nrrd, .mha; got '.xyz'",
        ),
        ("result_dtype", "uint4", "result_dtype must be one of uint8"),
        ("device", "gpu9", "device must be 'cpu', 'cuda' or 'cuda:N'; got 'gpu9'"),
        ("result_compress", "maybe", "result_compress must be true or false; got 'maybe'"),
    ]
    for model in ("pce", "crf"):
        label = {"label_in": unnamed} if model == "crf" else {}
        for key, value, message in shared:
            params = {**info, key: value}
            _refused(lambda: client.infer(model, "case_004", params, **label), 422, message)
    _refused(lambda: client.infer("pce", "case_004", {}), 409, "model 'pce' has not been trained yet")

    # training parameters, refused before any training starts
    _refused(lambda: client.train_start("pce", {"epochs": 1}), 422, "unknown training parameter(s) ['epochs']")
    _refused(lambda: client.train_start("pce", {"epochs": 1}), 422, "known: ['bn_recalibration_batches'")
    for bad in (0, -3, "many", 2.5, True):
        _refused(
            lambda: client.train_start("pce", {"max_epochs": bad}),
            422,
            f"training parameter 'max_epochs' of 'pce' must be a whole number, at least 1, got {bad!r}",
        )
    _refused(
        lambda: client.train_start("pce", {"patch_size": [96, 96, 12]}),
        422,
        "must be a multiple of the network's down-sampling [32, 32, 8] per axis, got [96, 96, 12]",
    )
    _refused(
        lambda: client.train_start("pce", {"name": "../../escape"}), 422, "'name' of 'pce' must be a plain run name"
    )
    _refused(lambda: client.train_start("pce", {"val_split": 1}), 422, "'val_split' of 'pce' must be a number")
    _refused(lambda: client.train_start("can_em", {"recursions": 0}), 422, "'recursions' of 'can_em' must be a whole")
    _refused(lambda: client.train_start("pce", {"recursions": 2}), 422, "unknown training parameter(s) ['recursions']")
    assert not client.train_status(check_if_running=True)
    assert not os.path.exists(os.path.join(guarded.app_dir, "model", "pce"))  # no run folder was made

    # the valid writes go through
    assert client.upload_image(good, image_id="fresh_volume") == {"image": "fresh_volume"}
    assert client.save_label("case_004", unnamed, params=info)["label"] == "case_004"

    assert client.info()["name"] == "scribble_seg"  # still up
    after_objects = {k: sorted(v["labels"]) for k, v in client.datastore()["objects"].items()}
    assert after_objects == {**before_objects, "fresh_volume": [], "case_004": ["final"]}
    after_files = _snapshot(guarded.studies)
    assert {k: v for k, v in after_files.items() if k in before_files} == before_files  # nothing changed
    assert set(after_files) - set(before_files) == {
        "fresh_volume.nii.gz",
        os.path.join("labels", "final", "case_004.nii.gz"),
    }
