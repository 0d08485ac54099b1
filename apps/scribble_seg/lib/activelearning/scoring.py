"""MC-dropout scoring of the volumes still to scribble (MONAI Label ``ScoringMethod`` adapter).

For every image without a label under the scribble tag, at the model's training spacing: one
deterministic pass predicts the foreground, then ``T`` dropout passes run on the foreground's box
grown by ``margin_mm`` (:func:`lib.activelearning.uncertainty.foreground_crop_score`), under
bfloat16 autocast where the device computes it natively (a GPU that supports it, a CPU with
AVX512-BF16 or AMX). The score is stored in the image's datastore info under
:data:`SCORE_KEY` together with the model name and the published weights' timestamp; images
whose score is for the current weights are skipped, so a new score is computed only when the
model changed (the log says which). The dropout masks of an image are seeded by its id,
so the same weights always give it the same score. MONAI Label runs scoring methods in a
subprocess (``POST /scoring/<name>``, at start-up, after each training and after each
``next_sample`` when ``MONAI_LABEL_AUTO_UPDATE_SCORING`` is on), so it never blocks inference.
"""

import copy
import logging
import os
import zlib
from typing import Any, Dict, Optional

import numpy as np
import torch
from monai.transforms import LoadImage
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.utils.others.generic import name_to_device

from lib.errors import RequestError
from lib.networks import final_logits, size_divisor

from .uncertainty import foreground_crop_score, intensity_features, passes_per_forward

logger = logging.getLogger(__name__)

SCORE_KEY = "scribble_uncertainty"
"""Image-info key of the score: ``{score, entropy, mutual_information, metric, model, model_ts}``."""
FEATURES_KEY = "scribble_features"
"""Image-info key of the model-independent appearance features (every image, computed once)."""


def model_timestamp(segmentation) -> int:
    """Timestamp of the published weights of a segmentation task (0 when untrained)."""
    path = segmentation.get_path()
    return int(os.stat(path).st_mtime_ns) if path else 0


def scoring_precision(device) -> bool:
    """Whether scoring runs under bfloat16 autocast on ``device``: on a GPU that supports it, and on
    a CPU with native bfloat16 instructions (AVX512-BF16 or AMX), where a forward of the 2.5D UNet
    takes about half the float32 time; elsewhere bfloat16 is emulated and slower, so float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def unlabeled(datastore: Datastore, tag: str):
    """Images without a label under ``tag`` (MONAI Label's own helper always means ``final``)."""
    return sorted(i for i in datastore.list_images() if not datastore.get_label_by_image_id(i, tag))


class EpistemicScoring(ScoringMethod):
    """MC-dropout uncertainty of the unlabelled volumes under one segmentation model.

    Args:
        segmentation: the ``ScribbleSegmentation`` infer task of the model to score with.
        scribble_tag: images with a label under it are not scored.
        passes: ``T`` (conf ``al_passes``); batch: passes per forward
            (``None``: by device, :func:`passes_per_forward`); metric: ``mutual_information`` or
            ``entropy``.
        margin_mm: context kept around the predicted foreground's box, per side (conf ``al_margin_mm``).
        bfloat16: ``"auto"`` (:func:`scoring_precision`), ``"true"`` or ``"false"``.
        device: default device (the request's ``device`` wins).
    """

    def __init__(
        self,
        segmentation,
        scribble_tag: str = "final",
        passes: int = 6,
        batch: Optional[int] = None,
        metric: str = "mutual_information",
        margin_mm: float = 16.0,
        bfloat16: str = "auto",
        device: str = "cpu",
    ):
        super().__init__(f"MC-dropout {metric} of '{segmentation.name}' on the volumes still to scribble")
        # conf values arrive checked by lib.conf; these guard direct callers (benchmarks)
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 2:
            raise ValueError(f"passes must be a whole number of at least 2 (MC dropout), got {passes!r}")
        if isinstance(margin_mm, bool) or not isinstance(margin_mm, (int, float)) or not margin_mm >= 0:
            raise ValueError(f"margin_mm must be a length in mm, at least 0, got {margin_mm!r}")
        if str(bfloat16).lower() not in ("auto", "true", "false"):
            raise ValueError(f"bfloat16 must be auto, true or false, got {bfloat16!r}")
        self.passes, self.margin_mm = passes, float(margin_mm)
        self.segmentation, self.scribble_tag = segmentation, scribble_tag
        self.batch, self.metric, self.device = batch, metric, device
        self.bfloat16 = str(bfloat16).lower()

    def margin_voxels(self, spacing) -> tuple:
        """``margin_mm`` in voxels of ``spacing`` (at least one voxel unless the margin is 0)."""
        return tuple(int(np.ceil(self.margin_mm / float(s))) for s in spacing)

    def autocast(self, device) -> bool:
        return scoring_precision(device) if self.bfloat16 == "auto" else self.bfloat16 == "true"

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        model_ts = model_timestamp(self.segmentation)
        if not model_ts:
            return {"scored": 0, "reason": f"model '{self.segmentation.name}' is not trained yet"}
        try:
            self.segmentation.check_label_set()
        except RequestError as e:  # trained for other labels: nothing to score until it is retrained
            return {"scored": 0, "reason": e.detail}
        device = torch.device(name_to_device(request.get("device", self.device)))
        network = copy.deepcopy(self.segmentation.loaded_network(device))
        margin = self.margin_voxels(self.segmentation.target_spacing())
        bf16 = self.autocast(device)
        for image_id in datastore.list_images():
            if FEATURES_KEY not in datastore.get_image_info(image_id):
                image = np.asarray(LoadImage(image_only=True)(datastore.get_image_uri(image_id)))
                datastore.update_image_info(image_id, {FEATURES_KEY: intensity_features(image).tolist()})
        todo, current = [], 0
        for image_id in unlabeled(datastore, self.scribble_tag):
            info = datastore.get_image_info(image_id).get(SCORE_KEY, {})
            if info.get("model") == self.segmentation.name and info.get("model_ts") == model_ts:
                current += 1
            else:
                todo.append(image_id)
        if not todo:
            logger.info(
                f"scores of the {current} unlabelled volumes are current for model "
                f"'{self.segmentation.name}': nothing to score"
            )
            return {"scored": 0, "skipped": current, "model": self.segmentation.name}
        logger.info(
            f"model '{self.segmentation.name}' changed: scoring {len(todo)} unlabelled volumes "
            f"({current} already current), {self.passes} passes, {'bfloat16' if bf16 else 'float32'}"
        )
        for image_id in todo:
            uri = datastore.get_image_uri(image_id)
            data = self.segmentation.run_pre_transforms(
                {"image": uri, "image_path": uri}, self.segmentation.pre_transforms()
            )
            x = torch.as_tensor(np.asarray(data["image"]), dtype=torch.float32)[None].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                info = foreground_crop_score(
                    network,
                    x,
                    self.passes,
                    passes_per_forward(device, self.batch),
                    self.metric,
                    margin,
                    size_divisor(network),
                    seed=zlib.crc32(image_id.encode()),
                    logits=final_logits,
                )
            info.update(
                {"metric": self.metric, "model": self.segmentation.name, "model_ts": model_ts, "passes": self.passes}
            )
            datastore.update_image_info(image_id, {SCORE_KEY: info})
            logger.info(f"{image_id}: {self.metric} {info['score']:.4f} (box {info['box_fraction']:.0%} of the volume)")
        return {"scored": len(todo), "skipped": current, "model": self.segmentation.name}
