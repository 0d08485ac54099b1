"""A DICOMweb datastore (a PACS such as Orthanc) guarded like the local one.

MONAI Label's :class:`DICOMWebDatastore` keeps a local cache of the series it fetched (under
``MONAI_LABEL_DICOMWEB_CACHE_PATH``, default ``~/.cache/monailabel/dicom/<md5(url)>``) and stores
``final`` labels in the PACS as DICOM SEG. :class:`ScribbleDICOMwebDatastore` keeps that and adds:

* the local datastore's checks before anything is stored (:class:`lib.datastore.ScribbleDatastore`):
  a label for an unknown series is a 404, a label of the wrong shape, scribbles without
  ``label_info`` or without a stroke a 422 -- nothing reaches the PACS;
* a series that is not a 3D volume (one slice, a 2D image) is a 422 naming it, and leaves the cache;
* a PACS that does not answer is a 503 naming its URL, never a bare 500; the server stays up;
* listings that follow the PACS: the series list is re-read after ``dicomweb_listing_s`` seconds and
  at once after a save through this server (MONAI Label caches both for 2 h, so a saved label did
  not count as labelled), and the labelled series are re-read on every listing (image by image:
  after 2 s) -- a SEG saved by another app server on the same PACS counts at once, and its
  scribbles are what training reads;
* series of every modality in conf ``dicomweb_modalities`` (MONAI Label's default filter lists CT
  only, hiding MR);
* SEG segment names that follow ``label_info`` by value (MONAI Label pairs ``label_info[i]`` with the
  ``i``-th present value, so a ``label_info`` naming an absent class shifts every later name), and
  labels read back from the PACS carry ``label_info`` from the SEG's segment names, so the scribble
  map a training reads is the one the annotator saved;
* the image info of a series never fetched holds its study, patient and modality from the PACS
  listing, so Next Sample's reply carries the ``StudyInstanceUID`` OHIF opens.

Images come from the PACS only: ``PUT /datastore/?image=`` is refused with a 405 naming the PACS.
"""

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pydicom
import requests
import SimpleITK as sitk
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import dicom_seg_to_itk_image
from monailabel.datastore.utils.dicom import dicom_web_download_series
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from lib.datastore import ScribbleDatastore, read_shape, read_volume
from lib.errors import RequestError
from lib.scribbles.convention import ScribbleConvention, parse_label_info, present_values

logger = logging.getLogger(__name__)

FINAL = DefaultLabelTag.FINAL.value
SERIES_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "PatientID", "StudyDate", "SeriesDate")
COUNT_FIELD = "NumberOfSeriesRelatedInstances"
SEG_LISTING_S = 2.0
"""Seconds a SEG listing is reused by per-image lookups (listings of the labelled images read it afresh)."""
INFO_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "PatientID", "StudyDate")
"""The PACS fields a series' image info carries before it is fetched (OHIF opens ``StudyInstanceUID``)."""


def require_dcmqi() -> str:
    """The path of dcmqi's ``itkimage2segimage`` (labels -> DICOM SEG), put on ``PATH`` when it sits beside
    this Python (the ``dcmqi`` wheel installs it there) -- MONAI Label would otherwise download dcmqi from
    GitHub at start-up, which fails offline. ``RuntimeError`` naming the fix when it is nowhere."""
    found = shutil.which("itkimage2segimage")
    beside = os.path.join(os.path.dirname(sys.executable), "itkimage2segimage")
    if not found and os.access(beside, os.X_OK):
        os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        found = beside
    if not found:
        raise RuntimeError(
            "a DICOMweb datastore stores labels as DICOM SEG with dcmqi's itkimage2segimage, which is not "
            f"installed: {sys.executable} -m pip install dcmqi==1.5.7"
        )
    return found


def dicomweb_client(url: str):
    """MONAI Label's DICOMweb client for ``url``, with its settings: HTTP basic credentials from
    ``MONAI_LABEL_DICOMWEB_USERNAME`` / ``MONAI_LABEL_DICOMWEB_PASSWORD``, and the QIDO / WADO / STOW
    prefixes ``MONAI_LABEL_QIDO_PREFIX`` etc."""
    from dicomweb_client.session_utils import create_session_from_user_pass
    from monailabel.config import settings
    from monailabel.datastore.dicom import DICOMwebClientX

    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = create_session_from_user_pass(
            settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
        )
    return DICOMwebClientX(
        url=url,
        session=session,
        qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
        wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
        stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
    )


def _value(ds: Dataset, key: str) -> str:
    return str(ds[key].value) if key in ds and ds[key].value is not None else ""


def seg_label_info(seg_file: str) -> List[Dict[str, Any]]:
    """``label_info`` of a DICOM SEG: ``[{"name": SegmentLabel, "idx": SegmentNumber}, ...]`` -- the values
    :func:`dicom_seg_to_itk_image` writes are the segment numbers."""
    ds = pydicom.dcmread(seg_file, stop_before_pixels=True)
    return [
        {"name": str(s.SegmentLabel), "idx": int(s.SegmentNumber)} for s in getattr(ds, "SegmentSequence", []) or []
    ]


def seg_on_image_grid(seg_file: str, image_file: str, out_file: str) -> str:
    """A DICOM SEG's label map (values = segment numbers) on its image's voxel grid, written to ``out_file``.

    A SEG stores frames only where a segment is present (``itkimage2segimage`` skips empty slices), so
    ``pydicom_seg`` rebuilds a volume spanning those slices alone; it is placed back on the image's
    grid (nearest neighbour, identity transform: the SEG's frames lie on the image's slices)."""
    converted = dicom_seg_to_itk_image(seg_file)
    try:
        seg = sitk.ReadImage(converted)
    finally:
        if converted and os.path.exists(converted):
            os.unlink(converted)
    image = sitk.ReadImage(image_file)
    on_grid = sitk.Resample(seg, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    sitk.WriteImage(on_grid, out_file, True)
    return out_file


def ordered_label_info(
    label: np.ndarray, label_info: Optional[Sequence[Dict[str, Any]]], convention: Optional[ScribbleConvention] = None
) -> List[Dict[str, Any]]:
    """``label_info`` with one entry per value present in ``label`` (the label map), ascending, as
    :func:`nifti_to_dicom_seg` pairs them by position; a value ``label_info`` does not name (a bare map
    under conf ``scribble_label_info optional``) is named by ``convention``."""
    names = {**(convention.value_names() if convention else {}), **parse_label_info(label_info or [])}
    values = [int(v) for v in present_values(label) if v != 0]
    return [{"name": names.get(v, f"label {v}"), "idx": v} for v in values]


class OrthancSharedInfo:
    """Image-info entries shared by every app server on one Orthanc: a JSON object in the series' user
    metadata ``index`` (Orthanc accepts indices 1024..65535 without configuration), through Orthanc's REST
    API beside its DICOMweb root (``<root>/dicom-web`` -> ``<root>``).

    Next Sample's served times live there, so two app servers on one PACS never serve the same volume
    inside the exclusion window. A DICOMweb server that is not Orthanc has no such store: each app server
    then keeps its served times to itself (:meth:`probe` is ``False``, logged at start-up).
    """

    def __init__(self, dicomweb_url: str, session: requests.Session, index: int = 4242):
        self.root = dicomweb_url.rstrip("/").rsplit("/dicom-web", 1)[0]
        self.session, self.index = session, int(index)
        self._ids: Dict[str, str] = {}

    def probe(self) -> bool:
        try:
            r = self.session.get(f"{self.root}/system", timeout=5)
            return r.ok and "ApiVersion" in r.json()
        except (requests.RequestException, ValueError):
            return False

    def _series_id(self, uid: str) -> Optional[str]:
        if uid not in self._ids:
            r = self.session.post(f"{self.root}/tools/lookup", data=uid, timeout=10)
            r.raise_for_status()
            found = [e["ID"] for e in r.json() if e.get("Type") == "Series"]
            if not found:
                return None
            self._ids[uid] = found[0]
        return self._ids[uid]

    def get(self, uid: str) -> Dict[str, Any]:
        series = self._series_id(uid)
        if not series:
            return {}
        r = self.session.get(f"{self.root}/series/{series}/metadata/{self.index}", timeout=10)
        if r.status_code == 404:
            return {}
        r.raise_for_status()
        try:
            value = r.json()
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def update(self, uid: str, info: Dict[str, Any]) -> None:
        series = self._series_id(uid)
        if series:
            merged = {**self.get(uid), **info}
            r = self.session.put(f"{self.root}/series/{series}/metadata/{self.index}", data=json.dumps(merged))
            r.raise_for_status()


class SegByValueDatastore(DICOMWebDatastore):
    """MONAI Label's SEG upload with each segment named after its own value: placed after the checks of
    :class:`ScribbleDatastore` in :class:`ScribbleDICOMwebDatastore`, so those read the label_info as sent."""

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        label_info = dict(label_info or {})
        if label_tag == FINAL:
            label = read_volume(label_filename, "the label")
            if not np.any(label):
                raise RequestError(f"the label for {image_id!r} is empty: a DICOM SEG needs at least one segment")
            label_info["label_info"] = ordered_label_info(label, label_info.get("label_info"), self.convention)
        return super().save_label(image_id, label_filename, label_tag, label_info)


class ScribbleDICOMwebDatastore(ScribbleDatastore, SegByValueDatastore):
    """:class:`DICOMWebDatastore` with the checks and listings of the module docstring.

    Args:
        client: the DICOMweb client (MONAI Label's, with the session carrying any credentials).
        modalities: series modalities listed as images (conf ``dicomweb_modalities``).
        listing_s: seconds a series listing is reused (conf ``dicomweb_listing_s``).
        cache_path: the local cache folder (``None``: MONAI Label's default under ``~/.cache``).
        (the keyword arguments of :class:`ScribbleDatastore`: convention, scribble_tag, ...)
    """

    def __init__(
        self,
        client,
        *,
        modalities: Sequence[str] = ("CT", "MR"),
        listing_s: float = 10.0,
        shared_keys: Sequence[str] = (),
        **kwargs,
    ):
        cache_path = kwargs.pop("cache_path", None)
        self.shared_keys = set(shared_keys)
        self.shared: Optional[OrthancSharedInfo] = None
        if self.shared_keys:
            shared = OrthancSharedInfo(client.base_url, client._session)
            if shared.probe():
                self.shared = shared
            else:
                logger.warning(
                    f"{client.base_url} is not Orthanc: image info {sorted(self.shared_keys)} stays on this server "
                    "(two app servers on this PACS may serve the same volume to two annotators)"
                )
        self.modalities = {str(m).upper() for m in modalities}
        self.listing_s = float(listing_s)
        self._series: Dict[str, Dict[str, str]] = {}
        self._listed_at = -np.inf
        self._frames: Dict[str, int] = {}  # a lone instance's frame count (immutable)
        self._seg_refs: Dict[str, Optional[str]] = {}  # SEG series -> the image series it labels (immutable)
        self._segs: Dict[str, str] = {}
        self._segs_at = -np.inf
        try:
            super().__init__(client=client, search_filter={}, cache_path=cache_path, **kwargs)
        except requests.RequestException as e:
            raise RuntimeError(f"the DICOMweb server at {client.base_url} does not answer: {e}") from None

    # ------------------------------------------------------------------------------ the PACS
    def _remote(self, what: str, call, *args, **kwargs):
        """``call(*args, **kwargs)`` against the PACS; a 503 naming the PACS when it does not answer."""
        try:
            return call(*args, **kwargs)
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else 502
            raise RequestError(
                f"the DICOMweb server at {self.name()} refused {what} (HTTP {status})", 404 if status == 404 else 502
            ) from None
        except (requests.ConnectionError, requests.Timeout) as e:
            raise RequestError(
                f"the DICOMweb server at {self.name()} is not reachable while {what} ({type(e).__name__}); "
                "nothing was changed, try again when it is up",
                503,
            ) from None

    def _list_series(self, force: bool = False) -> Dict[str, Dict[str, str]]:
        if force or time.monotonic() - self._listed_at > self.listing_s:
            found = self._remote(
                "listing its series",
                self._client.search_for_series,
                fields=[*SERIES_FIELDS, COUNT_FIELD],
                get_remaining=True,
            )
            series = {}
            for entry in found:
                ds = Dataset.from_json(entry)
                uid = _value(ds, "SeriesInstanceUID")
                series[uid] = {k: _value(ds, k) for k in SERIES_FIELDS}
                instances = _value(ds, COUNT_FIELD)
                series[uid]["slices"] = self._slices(uid, ds, int(instances)) if instances.isdigit() else 0
            self._series, self._listed_at = series, time.monotonic()
        return self._series

    def _slices(self, uid: str, ds: Dataset, instances: int) -> int:
        """Slices of a series: its instance count, or a lone instance's frame count (asked once: an enhanced
        multi-frame volume is one instance, a 2D image too)."""
        if instances != 1 or _value(ds, "Modality").upper() not in self.modalities:
            return instances
        if uid not in self._frames:
            found = self._remote(
                "listing a series' instances",
                self._client.search_for_instances,
                _value(ds, "StudyInstanceUID"),
                uid,
                fields=["NumberOfFrames"],
            )
            frames = _value(Dataset.from_json(found[0]), "NumberOfFrames") if found else ""
            self._frames[uid] = int(frames) if frames.isdigit() else 1
        return self._frames[uid]

    def list_images(self) -> List[str]:
        """Series of the served modalities that can be volumes (more than one slice; a server that does not
        count instances is trusted)."""
        return sorted(
            uid
            for uid, s in self._list_series().items()
            if s["Modality"].upper() in self.modalities and s["slices"] != 1
        )

    def _latest_segs(self, fresh: bool = True) -> Dict[str, str]:
        """``{image series: its newest SEG series}``, read from the PACS; with ``fresh=False`` a read at most
        :data:`SEG_LISTING_S` old is reused (one read serves a pass over the images one by one, e.g. a
        training's datalist). New SEGs' headers are fetched once: what a SEG references never changes."""
        if fresh or time.monotonic() - self._segs_at > SEG_LISTING_S:
            self._segs, self._segs_at = self._read_latest_segs(), time.monotonic()
        return self._segs

    def _read_latest_segs(self) -> Dict[str, str]:
        found = self._remote(
            "listing its segmentations",
            self._client.search_for_series,
            search_filters={"Modality": "SEG"},
            fields=list(SERIES_FIELDS) + ["SeriesTime"],
            get_remaining=True,
        )
        latest: Dict[str, tuple] = {}
        for order, entry in enumerate(found):
            ds = Dataset.from_json(entry)
            seg = _value(ds, "SeriesInstanceUID")
            if seg not in self._seg_refs:
                meta = self._remote(
                    "reading a segmentation's header",
                    self._client.retrieve_series_metadata,
                    _value(ds, "StudyInstanceUID"),
                    seg,
                )
                ref = Dataset.from_json(meta[0]) if meta else Dataset()
                refs = ref.get("ReferencedSeriesSequence")
                self._seg_refs[seg] = _value(refs[0], "SeriesInstanceUID") if refs else None
            image = self._seg_refs[seg]
            key = (_value(ds, "SeriesDate"), _value(ds, "SeriesTime"), order)
            if image and (image not in latest or key > latest[image][0]):
                latest[image] = (key, seg)
        return {image: seg for image, (_, seg) in latest.items()}

    # ------------------------------------------------------------------------------ images
    def require_image(self, image_id: str) -> None:
        if image_id not in self._list_series() and image_id not in self._list_series(force=True):
            raise RequestError(f"series {image_id!r} is not on the DICOMweb server {self.name()}", 404)
        if self._series[image_id]["Modality"].upper() not in self.modalities:
            raise RequestError(
                f"series {image_id!r} is a {self._series[image_id]['Modality']} series; this server serves "
                f"{sorted(self.modalities)} (conf dicomweb_modalities)",
                422,
            )
        if self._series[image_id]["slices"] == 1:
            raise RequestError(f"series {image_id!r} is a single 2D image, not a 3D volume: nothing to segment")

    def get_image_uri(self, image_id: str) -> str:
        self.require_image(image_id)
        uri = self._remote("sending a series", DICOMWebDatastore.get_image_uri, self, image_id)
        try:
            size = read_shape(uri)
        except Exception:
            size = ()
        if len(size) != 3 or min(size) < 2:
            self._forget_image(image_id)
            raise RequestError(f"series {image_id!r} is not a 3D volume (size {tuple(size)}): nothing to segment")
        return uri

    def _forget_image(self, image_id: str) -> None:
        folder = self._datastore.image_path()
        shutil.rmtree(os.path.join(folder, image_id), ignore_errors=True)
        if image_id in self._datastore.objects:
            LocalDatastore.remove_image(self, image_id)
        else:
            for name in os.listdir(folder):
                if name.startswith(image_id + "."):
                    os.unlink(os.path.join(folder, name))

    def get_image_info(self, image_id: str) -> Dict[str, Any]:
        local = ScribbleDatastore.get_image_info(self, image_id) or {}
        remote = self._list_series().get(image_id) or {}
        info = {**{k: remote[k] for k in INFO_FIELDS if remote.get(k)}, **local}
        if self.shared and remote:
            info.update(self._remote("reading shared image info", self.shared.get, image_id))
        return info

    def update_image_info(self, image_id: str, info: Dict[str, Any]) -> None:
        if image_id not in self._datastore.objects:
            self.get_image_uri(image_id)  # a series is cached (and its info kept) once it is fetched
        shared = {k: v for k, v in info.items() if k in self.shared_keys}
        if self.shared and shared:
            self._remote("storing shared image info", self.shared.update, image_id, shared)
        super().update_image_info(image_id, info)

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        raise RequestError(
            f"this server reads its images from the DICOMweb server {self.name()}: store new series there "
            "(STOW-RS or the PACS's own upload), not through /datastore",
            405,
        )

    # ------------------------------------------------------------------------------ labels
    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        if (label_tag or FINAL) != FINAL:
            return LocalDatastore.get_labeled_images(self, label_tag, labels)
        images = set(self.list_images())
        return sorted(i for i in self._latest_segs() if i in images)

    def get_unlabeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        return sorted(set(self.list_images()) - set(self.get_labeled_images(label_tag, labels)))

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        if tag != FINAL:
            return LocalDatastore.get_label_by_image_id(self, image_id, tag)
        seg = self._latest_segs(fresh=False).get(image_id)
        if not seg or image_id not in self.list_images():
            return ""
        self._sync_label(image_id, seg)
        return image_id

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        if label_tag == FINAL and not self.get_label_by_image_id(image_id or label_id, FINAL):
            return ""
        return LocalDatastore.get_label_uri(self, image_id or label_id, label_tag)

    def _sync_label(self, image_id: str, seg: str) -> None:
        """The cached ``final`` label of ``image_id`` is SEG ``seg``'s voxels, with ``label_info`` from its
        segment names; downloaded only when the cache holds another (older or another server's) SEG."""
        self.refresh_metadata()
        obj = self._datastore.objects.get(image_id)
        label = obj.labels.get(FINAL) if obj else None
        if label and label.info.get("SeriesInstanceUID") == seg:
            return
        image_uri = self.get_image_uri(image_id)
        with tempfile.TemporaryDirectory() as tmp:
            self._remote(
                "sending a segmentation",
                dicom_web_download_series,
                None,
                seg,
                tmp,
                self._client,
                self._fetch_by_frame,
            )
            files = [os.path.join(tmp, f) for f in os.listdir(tmp)]
            if not files:
                raise RequestError(f"the SEG {seg!r} of series {image_id!r} holds no instance", 502)
            label_file = seg_on_image_grid(files[0], image_uri, os.path.join(tmp, "label.nii.gz"))
            info = {
                **self._dicom_info(seg),
                "SeriesInstanceUID": seg,
                "label_info": seg_label_info(files[0]),
            }
            LocalDatastore.save_label(self, image_id, label_file, FINAL, info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        store = ScribbleDatastore.save_label
        label_id = self._remote("storing a segmentation", store, self, image_id, label_filename, label_tag, label_info)
        self._listed_at = self._segs_at = -np.inf
        return label_id

    def _dicom_info(self, series_id: str) -> Dict[str, str]:
        known = self._list_series().get(series_id)
        if known:
            return {k: known[k] or "UNK" for k in INFO_FIELDS}
        return self._remote("describing a series", DICOMWebDatastore._dicom_info, self, series_id)

    def datalist(self, full_path=True) -> List[Dict[str, Any]]:
        for image_id in self.get_labeled_images():
            self.get_label_by_image_id(image_id, FINAL)
        return LocalDatastore.datalist(self, full_path)
