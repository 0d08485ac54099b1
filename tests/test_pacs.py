"""The app served from a real PACS: Debian's Orthanc with DICOMweb (apt-installed by the test when
missing), the sample phantoms stored in it as DICOM series with their scribbles as DICOM SEG, and
two app servers on that one Orthanc -- a team's setup -- driven with ``MONAILabelClient`` the way 3D
Slicer calls them."""

import json
import os
import tempfile
import time
import urllib.request

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from monailabel.client.client import MONAILabelClientException
from scipy import ndimage

from lib.datasets.dicom_series import read_series, series_uids, write_series
from lib.datasets.orthanc import Orthanc, load_studies
from lib.datasets.sample import label_info
from lib.scribbles.convention import to_scribble_map
from lib.scribbles.simulate import simulate_scribbles
from live_server import TINY_TRAINING, LiveServer, copy_app, free_port, http_status, wait_for_training


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, sample_root):
    """Orthanc holding the six sample phantoms (MR, three with scribbles as SEG), one phantom as a CT
    series and a one-slice series."""
    folder = str(tmp_path_factory.mktemp("orthanc"))
    with Orthanc(folder, free_port()) as orthanc:
        orthanc.loaded = load_studies(orthanc, os.path.join(sample_root, "studies"), "MR")
        image = sitk.ReadImage(os.path.join(sample_root, "studies", "case_005.nii.gz"))
        with tempfile.TemporaryDirectory() as tmp:
            orthanc.upload(write_series(image, os.path.join(tmp, "ct"), "CT", "ct_case", "ct_case"))
            orthanc.upload(write_series(image[:, :, 3:4], os.path.join(tmp, "flat"), "MR", "flat_case", "flat"))
        orthanc.ct = series_uids("ct_case")["SeriesInstanceUID"]
        orthanc.flat = series_uids("flat_case")["SeriesInstanceUID"]
        yield orthanc


@pytest.fixture(scope="module")
def servers(tmp_path_factory, pacs, sample_root):
    """Two app servers on the one Orthanc, each with its own cache folder (two machines)."""
    conf = {"models": "pce", "dataset_conf": os.path.join(sample_root, "studies", "scribble_seg.json")}
    started = []
    try:
        for name in ("a", "b"):
            work = str(tmp_path_factory.mktemp(f"pacs_server_{name}"))
            env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": os.path.join(work, "cache")}
            app = copy_app(os.path.join(work, "app"))
            started.append(LiveServer(app, pacs.dicomweb, conf=conf, workdir=work, env=env))
        yield started
    finally:
        for s in started:
            s.stop()


def _segs(pacs):
    with urllib.request.urlopen(f"{pacs.dicomweb}/series?Modality=SEG", timeout=30) as r:
        return sorted(json.loads(r.read() or b"[]"), key=str)


def _refused(call, status, message):
    with pytest.raises(MONAILabelClientException) as e:
        call()
    assert http_status(e.value) == status, e.value.msg
    assert message in e.value.msg, e.value.msg


def _scribbles(sample_root, case, convention, path, seed=5):
    truth = np.asarray(nib.load(os.path.join(sample_root, "groundtruth", f"{case}.nii.gz")).dataobj)
    image = nib.load(os.path.join(sample_root, "studies", f"{case}.nii.gz"))
    strokes = simulate_scribbles(truth, image.header.get_zooms()[:3], convention, seed=seed).astype(np.uint8)
    nib.save(nib.Nifti1Image(strokes, image.affine), str(path))
    return strokes


def test_a_volume_written_as_dicom_reads_back_identical(sample_root, tmp_path):
    original = sitk.ReadImage(os.path.join(sample_root, "studies", "case_000.nii.gz"))
    files = write_series(original, str(tmp_path / "series"), "CT", "roundtrip", "roundtrip")
    back = read_series(str(tmp_path / "series"))
    assert len(files) == original.GetSize()[2]
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
    assert np.allclose(back.GetOrigin(), original.GetOrigin(), atol=1e-3)
    assert np.allclose(back.GetSpacing(), original.GetSpacing(), atol=1e-3)
    assert np.allclose(back.GetDirection(), original.GetDirection(), atol=1e-6)


def test_the_server_lists_mr_and_ct_series_and_counts_the_pacs_labels(servers, pacs):
    stats = servers[0].get_json("/datastore/?output=stats")
    assert stats["total"] == 7  # six MR phantoms and the CT one; the one-slice series is no volume
    assert stats["completed"] == 3  # the three phantoms whose scribbles are SEGs in Orthanc


def test_an_image_fetched_from_the_pacs_matches_the_original(servers, pacs, sample_root):
    series = pacs.loaded["case_004"]
    blob = servers[0].get_bytes(f"/datastore/image?image={series}")
    path = os.path.join(servers[0].workdir, "fetched.nii.gz")
    open(path, "wb").write(blob)
    fetched, original = nib.load(path), nib.load(os.path.join(sample_root, "studies", "case_004.nii.gz"))
    assert np.array_equal(np.asarray(fetched.dataobj), np.asarray(original.dataobj))
    assert np.allclose(fetched.affine, original.affine, atol=1e-3)


def test_a_scribble_saved_on_one_server_is_a_seg_both_servers_count_and_read_back(
    servers, pacs, sample_root, convention, tmp_path
):
    a, b = servers
    before = len(_segs(pacs))
    series = pacs.loaded["case_004"]
    strokes = _scribbles(sample_root, "case_004", convention, tmp_path / "strokes.nii.gz")
    reply = a.client().save_label(
        series, str(tmp_path / "strokes.nii.gz"), tag="final", params={"label_info": label_info(convention)}
    )
    assert reply["image"] == series
    assert reply["retraining"]["pending_scribbles"] == 1  # counted for the retraining trigger
    assert len(_segs(pacs)) == before + 1
    assert a.get_json("/datastore/?output=stats")["completed"] == 4  # at once, not after MONAI Label's 2 h cache
    assert b.get_json("/datastore/?output=stats")["completed"] == 4
    # server b reads the SEG from Orthanc: the same scribble map, by the segment names
    blob = b.get_bytes(f"/datastore/label?label={series}&tag=final")
    path = os.path.join(b.workdir, "label.nii.gz")
    open(path, "wb").write(blob)
    info = b.client().datastore()["objects"][series]["labels"]["final"]["info"]
    names = {e["name"] for e in info["label_info"]}
    assert names == {e["name"] for e in label_info(convention)}
    back = to_scribble_map(np.asarray(nib.load(path).dataobj), convention, info["label_info"])
    assert np.array_equal(back, strokes)


def test_two_servers_never_serve_one_volume_twice_and_name_its_study(servers, pacs):
    a, b = servers
    unlabelled = {pacs.loaded["case_003"], pacs.loaded["case_005"], pacs.ct}
    studies = {pacs.loaded[c]: series_uids(c)["StudyInstanceUID"] for c in ("case_003", "case_005")}
    studies[pacs.ct] = series_uids("ct_case")["StudyInstanceUID"]
    served = []
    for server, annotator in ((b, "ohif_1"), (a, "slicer_2"), (b, "ohif_3")):
        reply = server.client().next_sample("next_to_scribble", {"client_id": annotator})
        assert reply["id"] in unlabelled, reply
        assert reply["StudyInstanceUID"] == studies[reply["id"]]  # what OHIF opens
        served.append(reply["id"])
    assert len(set(served)) == 3, served  # inside the exclusion window, across the two servers


def test_training_reads_the_scribbles_from_the_pacs(servers, pacs):
    client = servers[1].client()
    client.train_start("pce", TINY_TRAINING)  # in MONAI Label's training subprocess, its own datastore
    status = wait_for_training(client)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))
    image, reply = client.infer("pce", pacs.loaded["case_003"], {})
    assert nib.load(image).shape == (160, 160, 16)


def test_after_training_pacs_series_are_scored_and_served_by_uncertainty(servers, pacs):
    """The training above refreshes the scores in MONAI Label's scoring process (its own DICOMweb
    datastore, writing the cache's metadata); Next Sample then ranks the PACS series by them."""
    client = servers[1].client()
    unlabelled = {pacs.loaded["case_003"], pacs.loaded["case_005"], pacs.ct}
    deadline = time.time() + 300
    while time.time() < deadline:
        infos = {k: v["image"]["info"] for k, v in client.datastore()["objects"].items()}
        if all("scribble_uncertainty" in infos.get(i, {}) for i in unlabelled):
            break
        time.sleep(1)
    assert all("scribble_uncertainty" in infos.get(i, {}) for i in unlabelled), sorted(infos)
    reply = client.next_sample("next_to_scribble", {"client_id": "scored"})
    assert reply["id"] in unlabelled and reply["score"] is not None and "fallback" not in reply, reply


def test_bad_input_through_dicomweb_is_refused_and_nothing_is_stored(servers, pacs, sample_root, convention, tmp_path):
    a = servers[0]
    client = a.client()
    before = _segs(pacs)
    strokes_path = tmp_path / "strokes.nii.gz"
    _scribbles(sample_root, "case_003", convention, strokes_path)
    named = {"label_info": label_info(convention)}
    _refused(lambda: client.save_label("1.2.3.4", str(strokes_path), tag="final", params=named), 404, "1.2.3.4")
    _refused(lambda: client.save_label(pacs.flat, str(strokes_path), tag="final", params=named), 422, "not a 3D")
    _refused(lambda: client.save_label(pacs.ct, str(strokes_path), tag="final", params={}), 422, "label_info")
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), np.eye(4)), str(small))
    _refused(lambda: client.save_label(pacs.ct, str(small), tag="final", params=named), 422, "shape")
    _refused(lambda: client.upload_image(str(strokes_path), "new_case"), 405, "DICOMweb")
    assert _segs(pacs) == before
    assert a.get_json("/datastore/?output=stats")["completed"] == 4


def test_with_the_pacs_down_requests_answer_503_and_recover(servers, pacs, sample_root, convention, tmp_path):
    a = servers[0]
    strokes_path = tmp_path / "strokes.nii.gz"
    _scribbles(sample_root, "case_005", convention, strokes_path)
    pacs.stop()
    try:
        _refused(
            lambda: a.client().save_label(
                pacs.loaded["case_005"], str(strokes_path), tag="final", params={"label_info": label_info(convention)}
            ),
            503,
            "not reachable",
        )
        assert a.proc.poll() is None
    finally:
        pacs.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if a.get_json("/datastore/?output=stats")["completed"] == 4:
                break
        except OSError:
            time.sleep(0.5)
    assert a.get_json("/datastore/?output=stats")["completed"] == 4


def _clicks(truth, convention, slices=(5, 8, 11)):
    """Clicks an annotator makes in OHIF's Point Prompts (voxel indices, as cornerstone's worldToIndex
    gives them): on a few slices, four per structure -- the deepest point of each quadrant around its
    centre, so a ring (the myocardium) is clicked all round -- and background clicks in the corners."""
    from scipy import ndimage

    clicks = {}
    for name, value in convention.labels.items():
        for k in slices:
            mask = truth[:, :, k] == value
            if not mask.any():
                continue
            depth = ndimage.distance_transform_edt(mask)
            ci, cj = np.argwhere(mask).mean(0)
            ii, jj = np.indices(mask.shape)
            for quadrant in (
                (ii < ci) & (jj < cj),
                (ii < ci) & (jj >= cj),
                (ii >= ci) & (jj < cj),
                (ii >= ci) & (jj >= cj),
            ):
                if (mask & quadrant).any():
                    i, j = np.unravel_index(np.argmax(depth * quadrant), mask.shape)
                    clicks.setdefault(name, []).append([int(i), int(j), k])
    clicks["background"] = [[10, 10, k] for k in slices] + [[150, 150, k] for k in slices]
    return clicks


def test_ohif_point_prompts_are_stored_as_scribbles_and_refined(servers, pacs, sample_root, convention):
    """OHIF's Point Prompts: ``POST /infer/scribble_clicks`` with clicks per label name (type deepedit)."""
    a, b = servers
    models = a.client().info()["models"]
    assert models["scribble_clicks"]["type"] == "deepedit"
    assert set(models["scribble_clicks"]["labels"]) == set(convention.labels)
    series = pacs.loaded["case_003"]
    truth = np.asarray(nib.load(os.path.join(sample_root, "groundtruth", "case_003.nii.gz")).dataobj)
    before = len(_segs(pacs))
    clicks = _clicks(truth, convention)
    params = {**clicks, "result_extension": ".nrrd", "result_dtype": "uint8", "restore_label_idx": False}
    result, _ = a.client().infer("scribble_clicks", series, params)
    refined = np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(result))).transpose(2, 1, 0)
    assert refined.shape == truth.shape
    for name, points in clicks.items():
        value = convention.labels.get(name, 0)
        assert all(refined[tuple(p)] == value for p in points), name
    dice = {
        n: 2 * np.sum((refined == v) & (truth == v)) / (np.sum(refined == v) + np.sum(truth == v))
        for n, v in convention.labels.items()
    }
    print("scribble_clicks Dice from clicks on 3 slices:", {n: round(float(d), 3) for n, d in dice.items()})
    # the blood pools come back from clicks alone; the thin myocardium ring does not (the walk gives it to
    # the background: a ring needs strokes along it, or a trained model as prior)
    assert dice["lv"] > 0.9 and dice["rv"] > 0.8, dice
    # stored server-side, in the PACS: the other server reads the clicks as this series' scribbles
    assert len(_segs(pacs)) == before + 1
    blob = b.get_bytes(f"/datastore/label?label={series}&tag=final")
    path = os.path.join(b.workdir, "clicks.nii.gz")
    open(path, "wb").write(blob)
    info = b.client().datastore()["objects"][series]["labels"]["final"]["info"]
    stored = to_scribble_map(np.asarray(nib.load(path).dataobj), convention, info["label_info"])
    for name, points in clicks.items():
        value = convention.scribble_value(name)
        assert all(stored[tuple(p)] == value for p in points), name
    # a second round of clicks is merged with the first
    rv = np.argwhere(truth == convention.labels["rv"])
    more = {"rv": [[int(c) for c in rv[len(rv) // 3]]]}
    a.client().infer("scribble_clicks", series, more)
    blob = a.get_bytes(f"/datastore/label?label={series}&tag=final")
    open(path, "wb").write(blob)
    info = a.client().datastore()["objects"][series]["labels"]["final"]["info"]
    stored = to_scribble_map(np.asarray(nib.load(path).dataobj), convention, info["label_info"])
    assert stored[tuple(more["rv"][0])] == convention.labels["rv"]
    assert all(stored[tuple(p)] == convention.labels["lv"] for p in clicks["lv"])


def test_a_click_outside_the_image_or_on_no_label_is_refused(servers, pacs):
    client = servers[0].client()
    before = _segs(pacs)
    series = pacs.loaded["case_005"]
    _refused(lambda: client.infer("scribble_clicks", series, {"lv": [[500, 1, 1]]}), 422, "outside the image")
    _refused(lambda: client.infer("scribble_clicks", series, {"liver": [[5, 5, 5]]}), 422, "no label")
    _refused(lambda: client.infer("scribble_clicks", series, {"lv": [[5.5, 5, 5]]}), 422, "integer")
    _refused(lambda: client.infer("scribble_clicks", series, {"background": []}), 422, "no clicks")
    assert _segs(pacs) == before


def test_ohif_point_indices_address_the_voxels_the_server_loads(servers, pacs, sample_root, tmp_path):
    """cornerstone's worldToIndex inverts the DICOM geometry (origin = first slice's position, axes =
    ImageOrientationPatient, spacing = PixelSpacing and the slice step), so index [i, j, k] is the voxel
    at IPP_k + i * column spacing * row direction + j * row spacing * column direction. The image the
    server loads must put voxel [i, j, k] at that same point."""
    series = pacs.loaded["case_002"]
    path = tmp_path / "image.nii.gz"
    path.write_bytes(servers[0].get_bytes(f"/datastore/image?image={series}"))
    affine = nib.load(str(path)).affine  # RAS
    files = write_series(
        sitk.ReadImage(os.path.join(sample_root, "studies", "case_002.nii.gz")),
        str(tmp_path / "dcm"),
        "MR",
        "case_002",
        "x",
    )
    headers = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in files), key=lambda d: int(d.InstanceNumber))
    for i, j, k in [(0, 0, 0), (10, 3, 2), (100, 40, 7), (159, 159, 15)]:
        h = headers[k]
        row, col = np.asarray(h.ImageOrientationPatient[:3], float), np.asarray(h.ImageOrientationPatient[3:], float)
        lps = (
            np.asarray(h.ImagePositionPatient, float)
            + i * float(h.PixelSpacing[1]) * row
            + j * float(h.PixelSpacing[0]) * col
        )
        ras = affine @ np.array([i, j, k, 1.0])
        assert np.allclose(ras[:3] * [-1, -1, 1], lps, atol=1e-3), (i, j, k)


def test_slicer_refines_a_pacs_series_on_either_server(servers, pacs, sample_root, convention, tmp_path):
    """3D Slicer's scribbles panel against the PACS: the segmentation node (current segment, foreground
    and background strokes on 3 axial slices) sent to ``random_walk`` on one server, ``crf`` on the other,
    for a series neither has fetched yet."""
    from monai.transforms import LoadImage

    series = pacs.loaded["case_001"]
    image = nib.load(os.path.join(sample_root, "studies", "case_001.nii.gz"))
    truth = np.asarray(nib.load(os.path.join(sample_root, "groundtruth", "case_001.nii.gz")).dataobj)
    lv = truth == convention.labels["lv"]
    node = np.zeros(truth.shape, np.uint8)
    for k in (5, 8, 11):  # strokes on three axial slices, as Slicer users draw them
        inner = ndimage.binary_erosion(lv[:, :, k], iterations=2)
        ring = ndimage.binary_dilation(lv[:, :, k], iterations=6) & ~ndimage.binary_dilation(lv[:, :, k], iterations=4)
        node[:, :, k][inner] = 5  # foreground_scribbles
        node[:, :, k][ring] = 4  # background_scribbles
    path = str(tmp_path / "node.nii.gz")
    nib.save(nib.Nifti1Image(node, image.affine), path)
    info = [
        {"name": "lv", "id": 1},
        {"name": "background_scribbles", "id": 4},
        {"name": "foreground_scribbles", "id": 5},
    ]
    params = {"label_info": info, "selected_label_name": "lv", "result_extension": ".nrrd", "result_dtype": "uint8"}
    for server, method in zip(servers, ("random_walk", "crf")):
        result, reply = server.client().infer(method, series, params, label_in=path)
        mask = np.asarray(LoadImage(image_only=True)(result)) == 1
        dice = 2 * np.sum(mask & lv) / (mask.sum() + lv.sum())
        print(f"{method} on a PACS series, LV from 3 stroked slices: Dice {dice:.3f}")
        assert reply["mode"] == "binary" and mask.shape == lv.shape
        assert dice > 0.8, (method, dice)
