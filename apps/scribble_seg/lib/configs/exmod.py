from monailabel.interfaces.config import TaskConfig

from lib.conf import conf_float
from lib.networks import ExModUNet
from lib.trainers.exmod import ExModTrainTask

from .recipe import MixRecipeConfig


class Exmod(MixRecipeConfig, TaskConfig):
    """``exmod``: ExMod / CycleMix -- expanded 2D UNet (slice-wise), pCE on original and mixed
    slices, occlusion, global and local consistency.

    Conf: ``unet2d_features``, ``mix_occlusion``, ``mix`` and the ``exmod_*`` keys of :mod:`lib.conf`."""

    description = "ExMod/CycleMix: expanded 2D UNet, saliency-guided mix + occlusion, mix and integrity consistency"
    trainer_class = ExModTrainTask
    network_class = ExModUNet

    def recipe_kwargs(self):
        return {
            "global_weight": conf_float(self.conf, "exmod_global_weight", minimum=0),
            "local_weight": conf_float(self.conf, "exmod_local_weight", minimum=0),
        }
