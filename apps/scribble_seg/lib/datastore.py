"""A LocalDatastore that refuses bad writes before they touch the studies folder.

Every refusal is an HTTP 4xx whose message names the problem (:class:`lib.errors.RequestError`),
raised before MONAI Label copies anything, so the datastore holds exactly what it held plus the
valid writes:

* ids: a new image id or a label tag must be a plain name (letters, digits, ``.``, ``_``, ``-``;
  no ``..``, no path separator, no absolute path) -- MONAI Label builds file paths from them; a
  label must name an image already in the datastore (unknown ids, ``../x`` among them, resolve
  to nothing when read);
* size: uploads above ``max_upload_mb`` (413);
* images: readable by ITK, 3D (a 2D or 4D image is refused), finite (NaN / Inf refused);
* labels: the image exists (404), readable, the image's 3D shape; labels under the scribble tag
  must name their values in ``label_info`` (what 3D Slicer and OHIF send: a bare map's values
  could mean any class, and would be read silently in this server's convention), map onto the
  labels by name, and hold at least one stroke. ``label_info_required=False`` (conf
  ``scribble_label_info optional``) accepts bare maps already in the convention;
* metadata: ``datastore_v2.json`` is replaced atomically, never rewritten in place, and re-read
  when another process (MONAI Label's scoring / training subprocesses) changed it, so neither
  process's writes are lost nor invisible.
"""

import json
import logging
import os
import re
import tempfile
from typing import Any, Dict

import numpy as np
from filelock import FileLock
from monailabel.datastore.local import LocalDatastore, LocalDatastoreModel

from lib.conf import conf_text
from lib.errors import RequestError
from lib.scribbles.convention import UNANNOTATED, ScribbleConvention, present_values, to_scribble_map
from lib.scribbles.points import points_of

logger = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def scribble_tag(conf: Dict[str, str]) -> str:
    """Conf ``scribble_tag``: the datastore tag whose labels are training scribbles (MONAI Label's
    ``final`` label tag by default)."""
    return conf_text(conf, "scribble_tag")


def check_name(value: str, what: str) -> str:
    """``value`` if it is a safe file-name stem, else a 422 naming it."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value:
        raise RequestError(
            f"{what} {value!r} is not allowed: use letters, digits, '.', '_' and '-' "
            f"(no path, no '..', at most 128 characters)"
        )
    return value


def read_volume(path: str, what: str) -> np.ndarray:
    """The voxels of an image file in MONAI's (H, W, D) order; 422 if unreadable, truncated or not 3D.

    NIfTI is decoded by nibabel and NRRD by pynrrd, which both fail on a truncated file;
    SimpleITK (used for other formats) silently returns garbage for a truncated ``.nii.gz``.
    """
    name = path.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            data = np.asarray(nib.load(path).dataobj)
        elif name.endswith((".nrrd", ".nhdr")):
            import nrrd

            data, _ = nrrd.read(path)  # index order F: (x, y, z), as MONAI's readers
        else:
            import SimpleITK as sitk

            data = np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(path)))
    except Exception as e:  # every reader has its own error types; all mean the same here
        reason = (str(e).strip().splitlines() or ["unknown format"])[-1][:200]
        raise RequestError(f"{what} is not a readable image ({type(e).__name__}: {reason})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise RequestError(f"{what} must be a 3D single-channel volume; got {data.ndim}D of shape {data.shape}")
    return data


def read_shape(path: str):
    """3D size of an image file in (H, W, D) order, from its header."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return tuple(int(n) for n in reader.GetSize())


class ScribbleDatastore(LocalDatastore):
    """:class:`LocalDatastore` with the checks of the module docstring.

    Args:
        convention: the app's label convention.
        scribble_tag: the tag whose labels are training scribbles.
        max_upload_mb: largest accepted image or label file.
        label_info_required: refuse scribbles whose values no ``label_info`` names.
        (the other arguments are LocalDatastore's)
    """

    def __init__(
        self,
        *args,
        convention: ScribbleConvention,
        scribble_tag: str = "final",
        max_upload_mb: float = 1024.0,
        points_tag: str = "points",
        label_info_required: bool = True,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.label_info_required = label_info_required
        self.convention, self.scribble_tag, self.max_upload_mb = convention, scribble_tag, float(max_upload_mb)
        self.points_tag = points_tag
        self.scribble_saves = 0

    def _update_datastore_file(self, lock=True):
        """LocalDatastore's metadata write (``datastore_v2.json``: every label's ``label_info``) made
        atomic: the parent truncates and rewrites the file in place, so a server killed mid-write
        left it corrupt."""

        def write():
            self._ignore_event_config = True
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            folder = os.path.dirname(self._datastore_config_path)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".datastore_", suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self._datastore_config_path)
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()

    # -- several processes share datastore_v2.json: MONAI Label's scoring / training subprocesses
    # write it from their own in-memory copy. Re-read it when it changed before reading metadata,
    # and update info as reload + modify + write under one lock, so no process's write is lost.
    def _reload_if_changed(self) -> None:
        path = self._datastore_config_path
        if os.path.exists(path) and os.stat(path).st_mtime != self._config_ts:
            with open(path) as fp:
                self._datastore = LocalDatastoreModel.model_validate_json(fp.read())
            self._datastore.base_path = self._datastore_path
            self._config_ts = os.stat(path).st_mtime

    def refresh_metadata(self) -> None:
        with FileLock(self._lock_file):
            self._reload_if_changed()

    def update_image_info(self, image_id: str, info: Dict[str, Any]) -> None:
        with FileLock(self._lock_file):
            self._reload_if_changed()
            obj = self._datastore.objects.get(image_id)
            if not obj:
                raise RequestError(f"image {image_id!r} is not in the datastore", 404)
            obj.image.info.update(info)
            self._update_datastore_file(lock=False)

    def update_label_info(self, label_id: str, label_tag: str, info: Dict[str, Any]) -> None:
        with FileLock(self._lock_file):
            self._reload_if_changed()
            label = self._datastore.label(label_id, label_tag)
            if not label:
                raise RequestError(f"label {label_id!r} / tag {label_tag!r} is not in the datastore", 404)
            label.info.update(info)
            self._update_datastore_file(lock=False)

    def get_image_info(self, image_id: str) -> Dict[str, Any]:
        self.refresh_metadata()
        return super().get_image_info(image_id)

    def list_images(self):
        self.refresh_metadata()
        return super().list_images()

    def json(self):
        self.refresh_metadata()
        return super().json()

    def status(self):
        self.refresh_metadata()
        return super().status()

    def _check_size(self, path: str, what: str) -> None:
        size_mb = os.path.getsize(path) / 2**20
        if size_mb > self.max_upload_mb:
            raise RequestError(
                f"{what} is {size_mb:.1f} MB, above the server's limit of {self.max_upload_mb:g} MB "
                f"(conf max_upload_mb)",
                413,
            )

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        image_id = image_id or self._to_id(os.path.basename(image_filename))[0]
        check_name(image_id, "image id")
        self._check_size(image_filename, "the image")
        voxels = read_volume(image_filename, "the uploaded image")
        if not np.all(np.isfinite(voxels)):
            raise RequestError(f"the uploaded image {image_id!r} holds NaN or Inf values")
        self.refresh_metadata()
        return super().add_image(image_id, image_filename, image_info)

    def require_image(self, image_id: str) -> None:
        """404 unless ``image_id`` is an image of this datastore (a known id is a file name already: no
        path in it)."""
        self.refresh_metadata()
        if image_id not in self._datastore.objects:
            raise RequestError(f"image {image_id!r} is not in the datastore", 404)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        self.require_image(image_id)
        check_name(label_tag, "label tag")
        self._check_size(label_filename, "the label")
        label = read_volume(label_filename, "the label")
        shape = read_shape(self.get_image_uri(image_id))
        if label.shape != shape:
            raise RequestError(f"the label has shape {label.shape}, image {image_id!r} has {shape}")
        if label_tag == self.scribble_tag:
            named = (label_info or {}).get("label_info")
            if not named and self.label_info_required:
                raise RequestError(
                    f"the scribbles for {image_id!r} carry no label_info, so their values "
                    f"{[int(v) for v in present_values(label) if v != UNANNOTATED]} could mean any class "
                    f"(this server would read "
                    f"{self.convention.describe_values()}): send label_info naming each value, e.g. "
                    f'[{{"name": "{next(iter(self.convention.labels))}", "idx": 1}}] (3D Slicer and OHIF do), '
                    f"or start the server with --conf scribble_label_info optional to accept maps in this convention"
                )
            try:
                scribbles = to_scribble_map(label, self.convention, named)
            except ValueError as e:
                raise RequestError(f"scribbles for {image_id!r}: {e}") from None
            if not self.convention.annotated(scribbles).any():
                raise RequestError(f"the scribbles for {image_id!r} are empty: draw at least one stroke")
        if label_tag == self.points_tag:
            try:
                points_of(label, label_info, self.convention)
            except ValueError as e:
                raise RequestError(f"surface points for {image_id!r}: {e}") from None
        label_id = super().save_label(image_id, label_filename, label_tag, label_info)
        if label_tag == self.scribble_tag:
            self.scribble_saves += 1  # read by the app's retraining trigger
        return label_id
