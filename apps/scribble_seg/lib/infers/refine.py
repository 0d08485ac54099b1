"""``crf`` and ``random_walk``: interactive scribble refinement infer tasks (``InferType.SCRIBBLES``).

Two modes, chosen from the request:

* **binary** (3D Slicer's scribbles panel): the ``label`` file is the whole segmentation node --
  the current segments plus ``foreground_scribbles`` / ``background_scribbles`` -- with their ids
  in ``label_info`` and the segment to refine in ``selected_label_name``. The reply is the refined
  binary (0/1) mask of that segment, which Slicer imports into it.
* **multi-class** (no ``selected_label_name``): the ``label`` file is a scribble map in the app's
  convention (mapped by name when ``label_info`` is sent); the reply is a refined multi-class
  label map. MONAI Label's own scribbles tasks are binary only (MONAILabel issues #607, #756).

The prior, in this order: the softmax of the trained model named by ``prior_model`` (cached per
image: the next scribble round does not rerun the network); else, in binary mode, the selected
segment as it is in the label file (softened); then :func:`lib.scribbles.refine.refine` (crop
around what the user touched, CRF or random walk, strokes clamped). With neither, the strokes
alone: :func:`lib.scribbles.refine.from_strokes` (a random walk over the whole volume, so strokes
on a few axial slices reach the slices between and beyond them; for ``crf`` a dense CRF on top).
Large volumes are solved coarse-to-fine (:mod:`lib.scribbles.multiscale`). Every parameter of
:class:`DenseCRFParams` / :class:`RandomWalkParams`, plus ``margin_mm``,
``prior_confidence_segmentation`` and ``roi``, can be overridden per request.

Bad input -- no strokes, strokes of one class without a prior, a label file of another shape,
label ids ``label_info`` does not describe, an ROI outside the volume, NaN intensities -- answers
HTTP 422 with the reason; nothing is written. The image is read once per session
(:class:`lib.transforms.loaded_images.LoadedImages`): the next strokes on it skip the file.
"""

import logging
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.arrays import in_order
from lib.errors import RequestError
from lib.scribbles.convention import (
    BACKGROUND_SCRIBBLES,
    FOREGROUND_SCRIBBLES,
    NO_SEED,
    ScribbleConvention,
    from_slicer_binary,
    parse_label_info,
    present_values,
    require_strokes,
    to_scribble_map,
)
from lib.scribbles.crf import DenseCRFParams
from lib.scribbles.prior import segmentation_prior
from lib.scribbles.random_walk import RandomWalkParams
from lib.scribbles.refine import DEFAULT_MARGIN_MM, from_strokes, refine
from lib.transforms.loaded_images import LoadedImaged, LoadedImages
from lib.transforms.readers import COrderNibabelReader

logger = logging.getLogger(__name__)

PARAMS = {"crf": DenseCRFParams, "random_walk": RandomWalkParams}
LOADED = LoadedImages(capacity=2)
"""Images read for refinement, shared by both methods: the strokes of a session re-read nothing."""


def _client_error(exc: BaseException) -> Optional[RequestError]:
    """The client's fault behind MONAI's "applying transform" wrappers, as a RequestError (or None)."""
    while exc is not None:
        if isinstance(exc, RequestError):
            return exc
        if isinstance(exc, ValueError):
            return RequestError(str(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _number(
    data: Mapping[str, Any],
    key: str,
    default: float,
    what: str,
    low: Optional[float] = None,
    high: Optional[float] = None,
    inclusive: bool = True,
) -> float:
    """A numeric request parameter, refused with its name and what to send."""
    value = data.get(key, default)
    try:
        x = float(default if value in (None, "") else value)
    except (TypeError, ValueError):
        x = float("nan")
    below = low is not None and (x < low if inclusive else x <= low)
    above = high is not None and (x > high if inclusive else x >= high)
    if not np.isfinite(x) or below or above or isinstance(value, bool):
        raise ValueError(f"{key} must be {what}; got {value!r}")
    return x


class ScribbleRefinement(BasicInferTask):
    """Refine a segmentation from scribbles with a dense CRF or a random walk.

    Args:
        method: ``crf`` or ``random_walk``.
        convention: the app's label convention (multi-class mode).
        segmentation: ``{model name: ScribbleSegmentation}`` usable as ``prior_model``.
        margin_mm: margin of the solved box around what the user touched (default per method).
        description: shown in ``/info``.
    """

    def __init__(
        self,
        method: str,
        convention: ScribbleConvention,
        segmentation: Mapping[str, Any],
        margin_mm: Optional[float] = None,
        description: str = "",
        device: str = "cpu",
    ):
        defaults = PARAMS[method]()
        margin_mm = DEFAULT_MARGIN_MM[method] if margin_mm is None else margin_mm
        config = {
            "prior_model": "",
            "margin_mm": margin_mm,
            "prior_confidence_segmentation": 0.9,
            "device": device,
            **{k: getattr(defaults, k) for k in defaults.__dataclass_fields__},
        }
        super().__init__(
            path=None,
            network=None,
            type=InferType.SCRIBBLES,
            labels=dict(convention.labels),
            dimension=3,
            description=description or f"Scribble refinement: {method}",
            config=config,
        )
        self.method, self.convention, self.segmentation = method, convention, dict(segmentation)

    def is_valid(self) -> bool:
        return True

    def __call__(self, request, callbacks: Optional[Dict[Any, Callable]] = None):
        if not request.get("label"):
            raise RequestError("send the scribbles as the 'label' file (a labelmap of the image's shape)")
        image = request.get("image")
        request = {**request, "image_in_memory": isinstance(image, str) and os.path.isfile(image) and LOADED.has(image)}
        try:
            return super().__call__(request, callbacks)
        except Exception as e:
            error = _client_error(e)
            if error is None:
                raise
            raise RequestError(f"{self.method}: {error.detail}", error.status_code) from None

    def pre_transforms(self, data=None):
        return [
            LoadedImaged("image", LOADED),
            LoadImaged("label", image_only=True, dtype=None, reader=COrderNibabelReader()),
            EnsureChannelFirstd("label"),
        ]

    def inferer(self, data=None):
        return Compose([self._refine])

    def post_transforms(self, data=None):
        return []

    def writer(self, data: Dict[str, Any], extension=None, dtype=None):
        """MONAI Label's writer, handed the class map in Fortran order (:func:`lib.arrays.in_order`):
        its ITK writer copies the transpose of what it gets, which for a C-order full-size CT is a
        strided copy of ~0.2 s and for a Fortran-order one a plain ``memcpy``."""
        pred = data["pred"]
        data["pred_meta_dict"] = {"affine": getattr(pred, "affine", None)}
        data["pred"] = in_order(np.asarray(pred), "F")
        return super().writer(data, extension, dtype)

    # ---------------------------------------------------------------------------------------------
    def _refine(self, data: Dict[str, Any]) -> Dict[str, Any]:
        start = time.time()
        image_t, label_t = data["image"], data["label"]
        if image_t.shape[0] != 1:
            raise ValueError(f"image must have one channel, got {image_t.shape[0]}")
        image = np.asarray(image_t[0], dtype=np.float32)
        if image.ndim != 3:
            raise ValueError(f"image must be 3D, got {image.ndim}D")
        if tuple(label_t.shape[1:]) != image.shape or label_t.shape[0] != 1:
            raise ValueError(f"label file has shape {tuple(label_t.shape[1:])}, the image {image.shape}")
        label = np.asarray(label_t[0])
        spacing = [float(s) for s in image_t.pixdim]
        if not np.all(np.isfinite(image)):
            raise ValueError("image holds NaN or Inf values")

        if self._is_binary(data):
            binary = from_slicer_binary(label, data.get("label_info") or [], data.get("selected_label_name"))
            seeds = binary.convention.seeds(binary.scribbles, binary.convention.seed_dtype())
            prior, region, source = self._binary_prior(data, binary, seeds)
            mode, num_classes = "binary", 2
        else:
            scribbles = to_scribble_map(label, self.convention, data.get("label_info") or None)
            seeds = self.convention.seeds(scribbles, self.convention.seed_dtype())
            prior, region, source = self._multiclass_prior(data, seeds)
            mode, num_classes = "multiclass", self.convention.num_classes
        require_strokes(seeds)

        params = PARAMS[self.method].from_request(data)
        margin = _number(data, "margin_mm", DEFAULT_MARGIN_MM[self.method], "a length in mm, at least 0", low=0.0)
        roi = data.get("roi") or None
        if prior is None:
            pred = from_strokes(
                self.method, image, seeds, spacing, num_classes, params, margin_mm=margin, roi=roi, labels=True
            )
        else:
            pred = refine(
                self.method, image, seeds, spacing, prior, params, region=region, margin_mm=margin, roi=roi, labels=True
            )
        data["pred"] = MetaTensor(torch.as_tensor(pred), meta=dict(image_t.meta))
        data["result"] = {
            "method": self.method,
            "mode": mode,
            "prior": source,
            "refine_seconds": round(time.time() - start, 3),
            "image_in_memory": bool(data.get("image_in_memory")),  # read ahead or by an earlier stroke
        }
        return data

    @staticmethod
    def _is_binary(data) -> bool:
        if data.get("selected_label_name"):
            return True
        try:
            names = {n.strip().lower() for n in parse_label_info(data.get("label_info") or []).values()}
        except ValueError:
            return False
        return bool(names & {FOREGROUND_SCRIBBLES, BACKGROUND_SCRIBBLES})

    def _model_prior(self, data) -> Optional[np.ndarray]:
        name = (data.get("prior_model") or "").strip()
        if not name:
            return None
        if name not in self.segmentation:
            raise RequestError(
                f"prior_model {name!r} is not a segmentation model of this app; "
                f"choose one of {sorted(self.segmentation)}",
                404,
            )
        return self.segmentation[name].probabilities(data["image_path"], data.get("device", "cpu"))

    def _binary_prior(self, data, binary, seeds):
        selected = data["selected_label_name"].strip()
        labels = {n.lower(): i for n, i in self.convention.labels.items()}
        if (data.get("prior_model") or "").strip() and selected.lower() not in labels:  # before any inference
            raise ValueError(f"prior_model segments {list(self.convention.labels)}, not {selected!r}")
        model = self._model_prior(data)
        if model is not None:
            p = model[labels[selected.lower()]]
            return np.stack([1.0 - p, p]), p > 0.5, f"model:{data['prior_model']}"
        if binary.prior.any():
            conf = _number(
                data,
                "prior_confidence_segmentation",
                0.9,
                "the probability the current segment gets, above 1/2 (two classes) and below 1",
                low=0.5,
                high=1.0,
                inclusive=False,
            )
            # no region: a correction re-solves the box around the strokes only, and the segment
            # stays as it is elsewhere (re-solving the whole segment's box smoothed thin parts far
            # from any stroke away: ribs corrected on 3 slices lost a third of their Dice)
            return segmentation_prior(binary.prior.astype(np.int64), 2, conf, seeds=seeds), None, "segmentation"
        self._check_two_classes(seeds)
        return None, None, "strokes"

    def _multiclass_prior(self, data, seeds):
        model = self._model_prior(data)
        if model is not None:
            return model, model.argmax(0) != 0, f"model:{data['prior_model']}"
        self._check_two_classes(seeds)
        return None, None, "strokes"

    @staticmethod
    def _check_two_classes(seeds):
        require_strokes(seeds)
        classes = present_values(seeds[seeds != NO_SEED])
        if len(classes) < 2:
            raise ValueError(
                "strokes of a single class and no prior to refine: add background strokes "
                "(or name a trained prior_model)"
            )
