"""MC-dropout scoring of the volumes still to scribble (MONAI Label ``ScoringMethod`` adapter).

For every image without a label under the scribble tag, ``T`` dropout passes of the current
model (:mod:`lib.activelearning.uncertainty`), stored in the image's datastore info under
:data:`SCORE_KEY` together with the model name and the published weights' timestamp; images
whose score is for the current weights are skipped. The dropout masks of an image are seeded by its id,
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

from lib.errors import RequestError
from lib.networks import final_logits

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.utils.others.generic import name_to_device

from .uncertainty import enable_mc_dropout, intensity_features, mc_dropout_maps, passes_per_forward, volume_score

logger = logging.getLogger(__name__)

SCORE_KEY = "scribble_uncertainty"
"""Image-info key of the score: ``{score, entropy, mutual_information, metric, model, model_ts}``."""
FEATURES_KEY = "scribble_features"
"""Image-info key of the model-independent appearance features (every image, computed once)."""


def model_timestamp(segmentation) -> int:
    """Timestamp of the published weights of a segmentation task (0 when untrained)."""
    path = segmentation.get_path()
    return int(os.stat(path).st_mtime_ns) if path else 0


def unlabeled(datastore: Datastore, tag: str):
    """Images without a label under ``tag`` (MONAI Label's own helper always means ``final``)."""
    return sorted(i for i in datastore.list_images() if not datastore.get_label_by_image_id(i, tag))


class EpistemicScoring(ScoringMethod):
    """Args:
        segmentation: the ``ScribbleSegmentation`` infer task of the model to score with.
        scribble_tag: images with a label under it are not scored.
        passes: ``T``; batch: passes per forward (``None``: by device, :func:`passes_per_forward`);
            metric: ``mutual_information`` or ``entropy``.
        device: default device (the request's ``device`` wins).
    """

    def __init__(self, segmentation, scribble_tag: str = "final", passes: int = 20, batch: Optional[int] = None,
                 metric: str = "mutual_information", device: str = "cpu"):
        super().__init__(f"MC-dropout {metric} of '{segmentation.name}' on the volumes still to scribble")
        self.segmentation, self.scribble_tag = segmentation, scribble_tag
        self.passes, self.batch, self.metric, self.device = int(passes), batch, metric, device

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        model_ts = model_timestamp(self.segmentation)
        if not model_ts:
            return {"scored": 0, "reason": f"model '{self.segmentation.name}' is not trained yet"}
        try:
            self.segmentation.check_label_set()
        except RequestError as e:  # trained for other labels: nothing to score until it is retrained
            return {"scored": 0, "reason": e.detail}
        device = name_to_device(request.get("device", self.device))
        network = enable_mc_dropout(copy.deepcopy(self.segmentation._get_network(device, None)))
        scored, skipped = [], []
        for image_id in datastore.list_images():
            if FEATURES_KEY not in datastore.get_image_info(image_id):
                image = np.asarray(LoadImage(image_only=True)(datastore.get_image_uri(image_id)))
                datastore.update_image_info(image_id, {FEATURES_KEY: intensity_features(image).tolist()})
        for image_id in unlabeled(datastore, self.scribble_tag):
            current = datastore.get_image_info(image_id).get(SCORE_KEY, {})
            if current.get("model") == self.segmentation.name and current.get("model_ts") == model_ts:
                skipped.append(image_id)
                continue
            uri = datastore.get_image_uri(image_id)
            data = self.segmentation.run_pre_transforms({"image": uri, "image_path": uri},
                                                        self.segmentation.pre_transforms())
            x = torch.as_tensor(np.asarray(data["image"]), dtype=torch.float32)[None].to(device)
            maps = mc_dropout_maps(lambda b: final_logits(network(b)), x, self.passes,
                                   passes_per_forward(x.device, self.batch), seed=zlib.crc32(image_id.encode()))
            info = volume_score(maps, self.metric)
            info.update({"metric": self.metric, "model": self.segmentation.name, "model_ts": model_ts,
                         "passes": self.passes})
            datastore.update_image_info(image_id, {SCORE_KEY: info})
            scored.append(image_id)
            logger.info(f"{image_id}: {self.metric} {info['score']:.4f}")
        return {"scored": len(scored), "skipped": len(skipped), "model": self.segmentation.name}
