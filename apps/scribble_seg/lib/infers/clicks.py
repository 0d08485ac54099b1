"""``scribble_clicks``: scribble refinement as OHIF's point-prompt model (``InferType.DEEPEDIT``).

The OHIF v3 panel shipped with MONAI Label lists no model of type ``scribbles`` and has no Submit
Label button; its Point Prompts tab offers models of type ``deepgrow`` / ``deepedit`` and sends the
clicks per label name (:mod:`lib.scribbles.clicks`). This task makes that enough to scribble:

1. the clicks become balls of ``click_radius_mm`` (conf) painted into the image's stored scribble
   map (datastore tag ``scribble_tag``, merged with what is there), which is saved right away through
   the guarded datastore -- so the clicks train the recipes with no save button, and count towards
   the retraining trigger like a Submit Label;
2. the merged map is refined in multi-class mode (:class:`lib.infers.refine.ScribbleRefinement`), with
   as prior, in this order: the request's ``prior_model``; else conf ``click_prior_model`` when that
   model is trained; else this image's last ``scribble_clicks`` result (kept in memory); else the
   strokes alone;
3. the reply is the multi-class label map, values = the app's class ids (``/info`` lists them as the
   model's labels, which OHIF maps to its segments).

A click outside the image, under a name that is no label, or not three integers answers 422 and
stores nothing.
"""

import logging
import os
import tempfile
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional

import nibabel as nib
import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.errors import RequestError
from lib.scribbles.clicks import paint_clicks, parse_clicks
from lib.scribbles.convention import UNANNOTATED, ScribbleConvention, to_scribble_map
from lib.scribbles.prior import segmentation_prior

from .refine import LOADED, ScribbleRefinement

logger = logging.getLogger(__name__)


def convention_label_info(convention: ScribbleConvention):
    """``label_info`` naming every annotated value of ``convention`` (what a saved scribble map carries)."""
    return [{"name": name, "idx": value} for value, name in convention.value_names().items()]


class ClickRefinement(ScribbleRefinement):
    """OHIF's point prompts -> stored scribbles -> refinement (see the module docstring).

    Args:
        method: ``crf`` or ``random_walk``.
        convention: the app's label convention.
        segmentation: ``{model name: ScribbleSegmentation}`` usable as prior.
        datastore: returns the app's datastore (called per request).
        scribble_tag: the datastore tag of training scribbles.
        radius_mm: radius of a click's ball.
        prior_model: the model whose prediction a click refines once it is trained (``""``: none).
        memory: images whose last result is kept as the next prior.
    """

    def __init__(
        self,
        method: str,
        convention: ScribbleConvention,
        segmentation: Mapping[str, Any],
        datastore: Callable[[], Any],
        scribble_tag: str = "final",
        radius_mm: float = 3.0,
        prior_model: str = "",
        memory: int = 8,
        device: str = "cpu",
    ):
        super().__init__(
            method,
            convention,
            segmentation,
            description=f"Clicks as scribbles ({method}): each click a {radius_mm:g} mm stroke, stored and refined",
            device=device,
        )
        self.type = InferType.DEEPEDIT
        self.datastore, self.scribble_tag = datastore, scribble_tag
        self.radius_mm, self.prior_model = float(radius_mm), prior_model
        self._last: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._memory = int(memory)

    def __call__(self, request, callbacks: Optional[Dict[Any, Callable]] = None):
        image_id = request.get("image_id")
        if not image_id:
            raise RequestError("scribble_clicks refines an image of the datastore: send image=<its id>")
        request = dict(request)
        request["label"], request["label_info"] = self._store_clicks(image_id, request), None
        prior_model = (request.get("prior_model") or "").strip() or self._trained_prior()
        request["prior_model"] = prior_model
        try:
            result = super().__call__(request, callbacks)
        finally:
            os.unlink(request["label"])
        return result

    def _get_network(self, device, data):
        return None  # the refinement is the inferer (MONAI Label only skips the network for type scribbles)

    def _trained_prior(self) -> str:
        task = self.segmentation.get(self.prior_model)
        return self.prior_model if task is not None and task.is_trained() else ""

    def _store_clicks(self, image_id: str, request: Mapping[str, Any]) -> str:
        """The image's scribbles with the clicks painted in, saved under ``scribble_tag``; the file's path."""
        image_path = request["image"]
        image = LOADED(image_path)
        shape, spacing = tuple(image.shape[1:]), [float(s) for s in image.pixdim]
        try:
            clicks = parse_clicks(request, self.convention, shape)
        except ValueError as e:
            raise RequestError(f"scribble_clicks: {e}") from None
        if not clicks:
            raise RequestError(
                "scribble_clicks: no clicks; send them per label name, e.g. "
                f'{{"{next(iter(self.convention.labels))}": [[i, j, k]], "background": [[i, j, k]]}}'
            )
        datastore = self.datastore()
        scribbles = np.full(shape, UNANNOTATED, dtype=np.uint8)
        label_id = datastore.get_label_by_image_id(image_id, self.scribble_tag)
        if label_id:
            stored = np.asarray(nib.load(datastore.get_label_uri(label_id, self.scribble_tag)).dataobj)
            info = datastore.get_label_info(label_id, self.scribble_tag).get("label_info") or None
            if stored.shape == shape:
                scribbles = to_scribble_map(stored, self.convention, info).astype(np.uint8)
            else:
                logger.warning(f"stored scribbles of {image_id} have shape {stored.shape}, image {shape}: replaced")
        merged = paint_clicks(scribbles, clicks, spacing, self.radius_mm)
        affine = nib.load(image_path).affine  # the image file's own geometry (a DICOM SEG must match it)
        fd, path = tempfile.mkstemp(suffix=".nii.gz")
        os.close(fd)
        nib.save(nib.Nifti1Image(merged, affine), path)
        datastore.save_label(image_id, path, self.scribble_tag, {"label_info": convention_label_info(self.convention)})
        return path

    # the last result of an image is the next click's prior when no trained model gives one
    def _multiclass_prior(self, data, seeds):
        if (data.get("prior_model") or "").strip():
            return super()._multiclass_prior(data, seeds)
        last = self._last.get(data.get("image_id"))
        if last is not None and last.shape == seeds.shape:
            prior = segmentation_prior(last.astype(np.int64), self.convention.num_classes, 0.9, seeds=seeds)
            return prior, last != 0, "last result"
        return super()._multiclass_prior(data, seeds)

    def _refine(self, data: Dict[str, Any]) -> Dict[str, Any]:
        data = super()._refine(data)
        image_id = data.get("image_id")
        if image_id:
            self._last[image_id] = np.asarray(data["pred"]).astype(np.uint8)
            self._last.move_to_end(image_id)
            while len(self._last) > self._memory:
                self._last.popitem(last=False)
        return data
