"""OHIF in a real browser: Debian's Chromium, headless, driven by Playwright (the system browser; no
browser download), against the OHIF v3 bundled in MONAI Label, served by the app from Orthanc.

The steps an annotator takes: the study list from the PACS, a study opened in the MONAI Label mode,
connect, Next Sample, Auto-Segmentation after a small training, Point Prompts clicked on the image
and refined -- and, server-side, the clicks stored as that image's scribbles. A screenshot of every
step goes to ``test-artifacts/ohif/`` (``SCRIBBLE_SEG_ARTIFACTS`` overrides the folder).
"""

import json
import os
import re

import nibabel as nib
import numpy as np
import pytest
from playwright.sync_api import expect, sync_playwright

from lib.datasets.dicom_series import series_uids
from lib.datasets.orthanc import Orthanc, load_studies
from lib.scribbles.convention import to_scribble_map
from live_server import REPO, TINY_TRAINING, LiveServer, copy_app, free_port, wait_for_training

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.environ.get("SCRIBBLE_SEG_ARTIFACTS", os.path.join(REPO, "test-artifacts"))


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_root):
    """Orthanc with the sample phantoms, the app on it with ``pce`` trained a little."""
    folder = str(tmp_path_factory.mktemp("orthanc_ohif"))
    with Orthanc(folder, free_port()) as orthanc:
        loaded = load_studies(orthanc, os.path.join(sample_root, "studies"), "MR")
        work = str(tmp_path_factory.mktemp("ohif_server"))
        conf = {"models": "pce", "dataset_conf": os.path.join(sample_root, "studies", "scribble_seg.json")}
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": os.path.join(work, "cache")}
        with LiveServer(copy_app(os.path.join(work, "app")), orthanc.dicomweb, conf=conf, workdir=work, env=env) as s:
            client = s.client()
            client.train_start("pce", TINY_TRAINING)
            assert wait_for_training(client)["status"] == "DONE"
            s.loaded = loaded
            yield s


@pytest.fixture(scope="module")
def page(served):
    shots = os.path.join(ARTIFACTS, "ohif")
    os.makedirs(shots, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.shot = lambda name: page.screenshot(path=os.path.join(shots, f"{name}.png"))
        yield page
        browser.close()


def wait_for_toasts_to_close(page):
    """OHIF's notifications (sonner toasts, bottom right) cover the panel's lower buttons, and a
    toast under the mouse pointer never times out. Move the pointer off them, as an annotator
    would, and wait until they are gone before the next click."""
    page.mouse.move(5, 5)
    expect(page.locator("[data-sonner-toast]")).to_have_count(0, timeout=30_000)


def test_an_annotator_works_in_ohif(served, page, sample_root, convention):
    url = served.url
    case = "case_005"  # no scribbles yet
    series, study = served.loaded[case], series_uids(case)["StudyInstanceUID"]

    # 1. the study list, read from Orthanc through the app's DICOMweb proxy
    page.goto(f"{url}/ohif/")
    page.wait_for_selector('[data-cy="study-list-results"]', timeout=90_000)
    assert case in page.inner_text('[data-cy="study-list-results"]')
    page.shot("1_study_list")

    # 2. the study in the MONAI Label mode, connected to this server
    page.goto(f"{url}/ohif/monai-label?StudyInstanceUIDs={study}")
    page.wait_for_selector("#monailabelServerURL", timeout=90_000)
    page.fill("#monailabelServerURL", f"{url}/")
    with page.expect_response(lambda r: r.url.startswith(f"{url}/info/"), timeout=60_000) as info:
        page.locator("table.settingsTable button.actionButton").first.click()
    assert info.value.status == 200
    wait_for_toasts_to_close(page)
    page.get_by_text("Confirm and Hide").click()
    page.wait_for_selector("text=Auto-Segmentation", timeout=30_000)
    assert page.locator("select option:text-is('scribble_clicks')").count() == 1  # the point-prompt model
    page.shot("2_connected")

    # 3. Auto-Segmentation with the trained recipe
    with page.expect_response(lambda r: f"/infer/pce?image={series}" in r.url, timeout=120_000) as seg:
        page.locator(".tab-content button:has-text('Run')").first.click()
    assert seg.value.status == 200
    page.wait_for_timeout(2000)
    page.shot("3_auto_segmentation")
    wait_for_toasts_to_close(page)

    # 4. Point Prompts: the LV picked in the panel, one click at the centre of the axial viewport
    # (the phantom's LV), then Run
    page.get_by_text("Point Prompts").click()
    page.locator("tr.clickable-row:has(td:text-is('lv'))").first.click()
    box = page.locator("canvas").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(500)
    page.shot("4_click")
    with page.expect_request(lambda r: "/infer/scribble_clicks" in r.url, timeout=120_000) as sent:
        with page.expect_response(lambda r: "/infer/scribble_clicks" in r.url, timeout=120_000) as refined:
            page.locator(".tab-content button:has-text('Run')").nth(1).click()
    assert refined.value.status == 200
    page.wait_for_timeout(2000)
    page.shot("5_refined")
    wait_for_toasts_to_close(page)
    params = re.search(r'\{"background".*\}', sent.value.post_data).group(0)
    clicks = json.loads(params)["lv"]
    assert len(clicks) == 1

    # 5. server-side: the click is this series' scribbles, at the voxel OHIF sent, inside the true LV
    blob = served.get_bytes(f"/datastore/label?label={series}&tag=final")
    path = os.path.join(served.workdir, "ohif_clicks.nii.gz")
    open(path, "wb").write(blob)
    info = served.client().datastore()["objects"][series]["labels"]["final"]["info"]
    stored = to_scribble_map(np.asarray(nib.load(path).dataobj), convention, info["label_info"])
    truth = np.asarray(nib.load(os.path.join(sample_root, "groundtruth", f"{case}.nii.gz")).dataobj)
    i, j, k = clicks[0]
    assert stored[i, j, k] == convention.labels["lv"]
    assert truth[i, j, k] == convention.labels["lv"]  # the click landed where the annotator saw the LV
    assert np.count_nonzero(stored) < 100  # one ball of 3 mm, nothing else
    assert not page.errors, page.errors

    # 6. Next Sample: a volume without scribbles, and OHIF asked for its study
    page.get_by_text("Active Learning").click()
    with page.expect_response(lambda r: "/activelearning/" in r.url, timeout=60_000) as nxt:
        page.get_by_text("Next Sample").click()
    assert nxt.value.status == 200
    reply = nxt.value.json()
    labelled = {served.loaded[c] for c in ("case_000", "case_001", "case_002", case)}
    assert reply["id"] not in labelled and reply["StudyInstanceUID"]
    page.wait_for_timeout(2000)
    page.shot("6_next_sample")
