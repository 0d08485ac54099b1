from monailabel.interfaces.config import TaskConfig

from lib.networks import UNet2DBN
from lib.trainers.zscribbleseg import ZScribbleSegTrainTask

from .recipe import MixRecipeConfig


class Zscribbleseg(MixRecipeConfig, TaskConfig):
    """``zscribbleseg``: ZScribbleSeg -- 2D UNet (slice-wise), pCE on original and mixed slices,
    occlusion, mix consistency, integrity CE, and from ``zscribbleseg_prior_start_epoch`` (5) the
    EM mixture ratios + spatial-prior loss.

    Conf: ``unet2d_features`` (JSON, default ``[64, 128, 256, 512, 1024]``), ``mix_occlusion`` (32 px),
    ``mix`` (``cutmix`` or ``mixup``), ``zscribbleseg_prior_start_epoch``, ``zscribbleseg_prior_weight`` (1),
    ``zscribbleseg_global_weight`` (0.05), ``zscribbleseg_local_weight`` (1), ``zscribbleseg_em_max_ratio``
    (4: an EM mixture-ratio estimate beyond this factor of the scribbles' frequencies falls back to
    them); the ablations set
    ``mix none``, both consistency weights to 0, or the prior weight to 0."""

    description = "ZScribbleSeg: 2D UNet, mix + occlusion consistency, EM mixture ratios and spatial prior"
    trainer_class = ZScribbleSegTrainTask
    network_class = UNet2DBN

    def recipe_kwargs(self):
        return {
            "prior_start_epoch": int(self.conf.get("zscribbleseg_prior_start_epoch", 5)),
            "prior_weight": float(self.conf.get("zscribbleseg_prior_weight", 1.0)),
            "global_weight": float(self.conf.get("zscribbleseg_global_weight", 0.05)),
            "local_weight": float(self.conf.get("zscribbleseg_local_weight", 1.0)),
            "max_ratio": float(self.conf.get("zscribbleseg_em_max_ratio", 4.0)),
        }
