"""Random strategy: MONAI Label's, fixed.

MONAI Label 0.8.5's ``Random`` draws an unlabeled image with weight ``now - last_served_ts``
(seconds), so recently served images are rarely served again. Two defects, fixed here:

* when every candidate was served in the current second (a few quick "Next Sample" clicks on a
  study with few unlabeled volumes) all weights are 0 and ``random.choices`` raises
  ``ValueError: Total of weights must be greater than zero`` -- an HTTP 500 for the annotator.
  Weights here are ``now - last_served_ts + 1``: all-recent candidates are drawn uniformly.
* it reports ``weights[0]`` (the first candidate's) instead of the weight of the image it chose.

It also draws from its own generator, not Python's global one: MONAI's ``set_determinism`` (every
seeded training) resets the global state, so in a process that trains between draws each draw
would repeat nearly the same number, and the "random" picks would be the same quantile of the
sorted candidates round after round.
"""

import logging
import random
import time

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

logger = logging.getLogger(__name__)


class Random(Strategy):
    """An unlabeled image at random, weighted by the seconds since it was last served (+1)."""

    def __init__(self, seed=None):
        super().__init__("Random Strategy")
        self.rng = random.Random(seed)

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy = request.get("strategy", "random")
        now = int(time.time())
        served = [datastore.get_image_info(i).get("strategy", {}).get(strategy, {}).get("ts", 0) for i in images]
        weights = [max(0, now - ts) + 1 for ts in served]
        k = self.rng.choices(range(len(images)), weights=weights)[0]
        logger.info(f"Random: Selected Image: {images[k]}; Weight: {weights[k]}")
        return {"id": images[k], "weight": weights[k]}
