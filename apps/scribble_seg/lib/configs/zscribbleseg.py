from monailabel.interfaces.config import TaskConfig

from lib.conf import conf_float, conf_int
from lib.networks import UNet2DBN
from lib.trainers.zscribbleseg import ZScribbleSegTrainTask

from .recipe import MixRecipeConfig


class Zscribbleseg(MixRecipeConfig, TaskConfig):
    """``zscribbleseg``: ZScribbleSeg -- 2D UNet (slice-wise), pCE on original and mixed slices,
    occlusion, mix consistency, integrity CE, and from ``zscribbleseg_prior_start_epoch`` (5) the
    EM mixture ratios + spatial-prior loss.

    Conf: ``unet2d_features``, ``mix_occlusion``, ``mix`` and the ``zscribbleseg_*`` keys of
    :mod:`lib.conf`; the paper's ablations set ``mix none``, both consistency weights to 0, or the
    prior weight to 0."""

    description = "ZScribbleSeg: 2D UNet, mix + occlusion consistency, EM mixture ratios and spatial prior"
    trainer_class = ZScribbleSegTrainTask
    network_class = UNet2DBN

    def recipe_kwargs(self):
        return {
            "prior_start_epoch": conf_int(self.conf, "zscribbleseg_prior_start_epoch", minimum=0),
            "prior_weight": conf_float(self.conf, "zscribbleseg_prior_weight", minimum=0),
            "global_weight": conf_float(self.conf, "zscribbleseg_global_weight", minimum=0),
            "local_weight": conf_float(self.conf, "zscribbleseg_local_weight", minimum=0),
            "max_ratio": conf_float(self.conf, "zscribbleseg_em_max_ratio", minimum=1),
        }
