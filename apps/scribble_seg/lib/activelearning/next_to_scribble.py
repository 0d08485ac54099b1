"""``next_to_scribble``: which volume should the annotator scribble next?

Among the volumes without scribbles (under the app's scribble tag) that no client was served in
the last ``exclusion_minutes`` -- so two annotators never get the same one -- the one with the
highest MC-dropout uncertainty for the current model (:mod:`lib.activelearning.scoring`),
discounted by its similarity to the volumes already scribbled::

    priority(v) = score(v) * (1 - diversity * max_l cos(f_v, f_l)),    l scribbled volumes

with ``f`` the intensity-histogram features stored with the scores (``diversity = 0`` switches the
term off). Without a trained model or current scores it falls back to a random fresh volume and
says so in ``reason``. Serving is recorded under a lock, before the reply, so concurrent calls
cannot pick the same volume even when MONAI Label serves requests concurrently.
"""

import logging
import random
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from .scoring import FEATURES_KEY, SCORE_KEY, model_timestamp, unlabeled

logger = logging.getLogger(__name__)

SERVED_KEY = "next_to_scribble_served"


class NextToScribble(Strategy):
    """Args:
    segmentation: the infer task whose model the scores belong to (or ``None``: random only).
    scribble_tag: volumes with a label under it are done.
    exclusion_minutes: a volume served to any client this recently is skipped.
    diversity: weight of the similarity discount (0 = off).
    """

    def __init__(
        self,
        segmentation=None,
        scribble_tag: str = "final",
        exclusion_minutes: float = 10.0,
        diversity: float = 0.5,
        seed: Optional[int] = None,
    ):
        super().__init__("Most uncertain volume still to scribble, not being scribbled by someone else")
        self.segmentation, self.scribble_tag = segmentation, scribble_tag
        self.exclusion_s, self.diversity = 60.0 * float(exclusion_minutes), float(diversity)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def _last_served(self, info: Dict[str, Any]) -> float:
        times = [float(v.get("ts", 0)) for v in (info.get("strategy") or {}).values() if isinstance(v, dict)]
        return max(times + [float(info.get(SERVED_KEY, 0))])

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Optional[Dict[str, Any]]:
        with self._lock:
            candidates = unlabeled(datastore, self.scribble_tag)
            if not candidates:
                return None
            now = time.time()
            infos = {i: datastore.get_image_info(i) for i in candidates}
            fresh = [i for i in candidates if now - self._last_served(infos[i]) > self.exclusion_s]
            note = ""
            if not fresh:
                fresh = [min(candidates, key=lambda i: self._last_served(infos[i]))]
                note = "; every candidate was served recently: the least recently served one"
            pick = self._by_uncertainty(fresh, infos, datastore)
            if pick is None:
                image_id = self._rng.choice(fresh)
                reason = self._why_random() + note
                result = {"id": image_id, "score": None, "reason": reason, "fallback": "random"}
            else:
                image_id, priority, score, similarity = pick
                result = {
                    "id": image_id,
                    "score": score,
                    "priority": priority,
                    "reason": f"highest uncertainty ({score:.4g}) of {len(fresh)} volumes not scribbled and not "
                    f"being scribbled, similarity to scribbled volumes {similarity:.2f}" + note,
                }
            datastore.update_image_info(image_id, {SERVED_KEY: now})
        logger.info(f"next_to_scribble: {result}")
        return result

    def _why_random(self) -> str:
        if self.segmentation is None or not model_timestamp(self.segmentation):
            name = getattr(self.segmentation, "name", "the model")
            return f"random: '{name}' is not trained yet (POST /train/{name})"
        return "random: no current uncertainty scores yet (POST /scoring/next_to_scribble)"

    def _by_uncertainty(self, fresh: List[str], infos, datastore: Datastore):
        if self.segmentation is None:
            return None
        model_ts = model_timestamp(self.segmentation)
        scores = {
            i: infos[i][SCORE_KEY]
            for i in fresh
            if (infos[i].get(SCORE_KEY) or {}).get("model_ts") == model_ts and model_ts
        }
        if not scores:
            return None
        labeled = [
            datastore.get_image_info(i).get(FEATURES_KEY)
            for i in datastore.list_images()
            if datastore.get_label_by_image_id(i, self.scribble_tag)
        ]
        labeled = np.asarray([f for f in labeled if f], dtype=np.float64)
        best = None
        for image_id, s in scores.items():
            features = infos[image_id].get(FEATURES_KEY)
            similarity = float((labeled @ np.asarray(features)).max()) if len(labeled) and features else 0.0
            priority = float(s["score"]) * (1.0 - self.diversity * similarity)
            if best is None or priority > best[1]:
                best = (image_id, priority, float(s["score"]), similarity)
        return best
