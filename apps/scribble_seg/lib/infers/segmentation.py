"""Segmentation infer task for networks trained from scribbles (one per recipe: ``pce``, ...).

Pipeline (MONAI Label ``BasicInferTask``): load -> resample to the spacing the model was trained
at (``model/<name>.json``, written by the trainer) -> z-score -> :class:`SegmentationInferer`
(one pass for volumes that fit, sliding windows otherwise) -> softmax -> probabilities resampled
back to the input's grid (``Invertd`` of the pre-transforms; replaces MONAI Label's ``Restored``,
which imports torchvision) -> argmax -> connected-component clean-up (conf ``largest_component``, also a request
parameter: ``true``/``class``, the default: the largest component per structure; ``object``: the
largest foreground object, then one component per structure inside it; a structure name, e.g.
``myocardium``: the largest component of that structure and, of every other, the component that
borders it most -- :mod:`lib.transforms.components`; ``false`` for multi-focal structures such as
lesions) -> label map of the input's shape and affine. The network
is loaded once per device and reloaded only when training publishes new weights.

A model that was never trained answers HTTP 409 naming the ``/train/<name>`` to run, instead of
a random-weights result.
"""

import json
import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np
import torch
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    Invertd,
    KeepLargestConnectedComponentd,
    Lambdad,
    LoadImaged,
    NormalizeIntensityd,
    SqueezeDimd,
)
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.errors import RequestError
from lib.infers.inferer import SegmentationInferer
from lib.model_meta import label_set_mismatch
from lib.scribbles.convention import BACKGROUND_CLASS, ScribbleConvention
from lib.transforms import COrderNibabelReader, KeepAnchoredComponentsd, KeepLargestObjectd, Spacingd

PROBABILITIES = "return_probabilities"
"""Request flag: return the softmax at the input geometry instead of the label map."""
PROBABILITY_CACHE_SIZE = 8


COMPONENT_MODES = {"true": "class", "class": "class", "object": "object", "false": None, "none": None}


def component_mode(value: Any, labels: Optional[Dict[str, int]] = None) -> Union[None, str, int]:
    """Conf / request ``largest_component`` -> ``"class"`` (largest component per structure;
    ``true``), ``"object"`` (:func:`lib.scribbles.components.largest_object_labels`), the class
    index of the structure named (the anchor of :func:`lib.scribbles.components.anchored_labels`;
    names from ``labels``) or ``None`` (``false``)."""
    key = str(value).strip().lower()
    if key in COMPONENT_MODES:
        return COMPONENT_MODES[key]
    names = {str(k).lower(): int(v) for k, v in (labels or {}).items()}
    if key in names:
        return names[key]
    raise ValueError(
        "largest_component must be one of true, class, object, false"
        + "".join(f", {n}" for n in sorted(names))
        + f" (a structure: the anchor); got {value!r}"
    )


def threshold_foreground(probabilities: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(C, H, W, D)`` softmax -> ``(1, H, W, D)`` labels: the likeliest foreground class where
    ``1 - p(background) > gamma``, background elsewhere (Weak-Net's threshold ``gamma``)."""
    foreground = 1.0 - probabilities[BACKGROUND_CLASS]
    others = probabilities.clone()
    others[BACKGROUND_CLASS] = -1.0
    label = others.argmax(0)
    label[foreground <= gamma] = BACKGROUND_CLASS
    return label[None]


class ScribbleSegmentation(BasicInferTask):
    """Segmentation with a network trained by recipe ``name``.

    Args:
        name: model / recipe name (``/infer/<name>``, ``/train/<name>``).
        path: candidate weight files, MONAI Label style: ``[pretrained, published]``.
        network: the network architecture.
        convention: the app's label convention (``labels`` in ``/info``).
        meta_path: the trainer's geometry sidecar of the published model.
        target_spacing: used when the sidecar is missing (e.g. weights uploaded by hand).
        description: shown in ``/info``.
        config: extra request defaults shown in ``/info``.
    """

    def __init__(
        self,
        name: str,
        path: Sequence[str],
        network: torch.nn.Module,
        convention: ScribbleConvention,
        meta_path: str,
        target_spacing: Optional[Sequence[float]] = None,
        description: str = "",
        config: Optional[Dict[str, Any]] = None,
        foreground_threshold: Optional[float] = None,
        largest_component: Any = "class",
        **kwargs,
    ):
        super().__init__(
            path=list(path),
            network=network,
            type=InferType.SEGMENTATION,
            labels=dict(convention.labels),
            dimension=3,
            description=description or f"Segmentation by the '{name}' recipe",
            config={"result_dtype": "uint8", "largest_component": str(largest_component), **(config or {})},
            load_strict=True,
            **kwargs,
        )
        self.name, self.convention = name, convention
        self.meta_path, self.default_spacing = meta_path, target_spacing
        if foreground_threshold is not None and not 0.0 < float(foreground_threshold) < 1.0:
            raise ValueError(f"foreground_threshold must be in (0, 1), got {foreground_threshold}")
        self.foreground_threshold = foreground_threshold
        component_mode(largest_component, convention.labels)  # a bad conf stops start-up, naming the choices
        self.largest_component = str(largest_component)
        self._pre = None
        self._prob_cache: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self._cache_lock = threading.Lock()

    def is_trained(self) -> bool:
        return bool(self.get_path())

    def check_label_set(self) -> None:
        """409 when the published model was trained for another label set than this server's."""
        reason = label_set_mismatch(self.meta_path, self.convention.labels)
        if reason:
            raise RequestError(
                f"model '{self.name}' was {reason}; POST /train/{self.name} (3D Slicer: Train) "
                f"trains it for these labels from fresh weights",
                409,
            )

    def target_spacing(self) -> Sequence[float]:
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                return json.load(f)["target_spacing"]
        if self.default_spacing is None:
            raise RequestError(
                f"model '{self.name}' has weights but no {os.path.basename(self.meta_path)} "
                f"recording its training spacing; set --conf target_spacing or retrain",
                409,
            )
        return self.default_spacing

    def loaded_network(self, device) -> torch.nn.Module:
        """The published weights on ``device``, loaded once and cached (MONAI Label's loader)."""
        return self._get_network(device, None)

    def _get_network(self, device, data):
        """MONAI Label's cached loader; an unreadable weights file (partial copy, disk error, wrong
        architecture) answers 409 with the reason instead of a bare 500."""
        try:
            return super()._get_network(device, data)
        except Exception as e:
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            raise RequestError(
                f"the weights of model '{self.name}' ({self.get_path()}) cannot be loaded "
                f"({type(e).__name__}: {reason}); retrain it (POST /train/{self.name}) or restore "
                f"the file",
                409,
            ) from None

    def __call__(self, request, callbacks: Optional[Dict[Any, Callable]] = None):
        if not self.is_trained():
            raise RequestError(
                f"model '{self.name}' has not been trained yet: run POST /train/{self.name} "
                f"(3D Slicer: Train) once scribbles are submitted",
                409,
            )
        self.check_label_set()
        try:
            component_mode(request.get("largest_component", self.largest_component), self.convention.labels)
        except ValueError as e:
            raise RequestError(str(e), 422) from None
        return super().__call__(request, callbacks)

    def pre_transforms(self, data=None):
        """Built once per training geometry: ``Invertd`` must invert with the very instances that ran."""
        spacing = tuple(self.target_spacing())
        if self._pre is None or self._pre[0] != spacing:
            self._pre = (
                spacing,
                [
                    LoadImaged("image", image_only=True, reader=COrderNibabelReader()),
                    EnsureChannelFirstd("image"),
                    Spacingd("image", pixdim=spacing, mode="bilinear"),
                    NormalizeIntensityd("image"),
                    EnsureTyped("image", dtype=torch.float32),
                ],
            )
        return self._pre[1]

    def inferer(self, data=None):
        return SegmentationInferer()

    def inverse_transforms(self, data=None):
        return None  # done in post_transforms, on probabilities

    def post_transforms(self, data=None):
        restore = [
            EnsureTyped("pred", device="cpu", track_meta=True),  # Invertd needs a MetaTensor to take the trace
            Activationsd("pred", softmax=True),
            Invertd("pred", transform=Compose(self.pre_transforms(data)), orig_keys="image", nearest_interp=False),
        ]
        if data is not None and data.get(PROBABILITIES):
            return restore
        if self.foreground_threshold is not None:
            gamma = float(self.foreground_threshold)
            discrete = [Lambdad("pred", lambda p: threshold_foreground(p, gamma))]
        else:
            discrete = [AsDiscreted("pred", argmax=True)]
        mode = component_mode((data or {}).get("largest_component", self.largest_component), self.convention.labels)
        if mode == "class":  # one connected blob per structure: stray islands become background
            discrete.append(
                KeepLargestConnectedComponentd(
                    "pred", applied_labels=list(self.convention.labels.values()), is_onehot=False, independent=True
                )
            )
        elif mode == "object":  # the largest organ blob, then one blob per structure in it
            discrete.append(KeepLargestObjectd("pred"))
        elif mode is not None:  # the anchor's largest blob, then per structure the blob bordering it most
            discrete.append(KeepAnchoredComponentsd("pred", anchor=mode))
        return restore + discrete + [SqueezeDimd("pred", dim=0)]

    def probabilities(self, image_path: str, device: str) -> np.ndarray:
        """Softmax ``(C, H, W, D)`` at the input's geometry, cached per image file and model weights
        (a second scribble round on the same image does not rerun the network)."""
        key = (
            os.path.abspath(image_path),
            os.stat(image_path).st_mtime_ns,
            self.get_path(),
            os.stat(self.get_path()).st_mtime_ns if self.get_path() else 0,
        )
        with self._cache_lock:
            if key in self._prob_cache:
                self._prob_cache.move_to_end(key)
                return self._prob_cache[key]
        _, data = self({"image": image_path, "device": device, "skip_writer": True, PROBABILITIES: True})
        prob = np.asarray(data["pred"], dtype=np.float32)
        with self._cache_lock:
            self._prob_cache[key] = prob
            while len(self._prob_cache) > PROBABILITY_CACHE_SIZE:
                self._prob_cache.popitem(last=False)
        return prob
