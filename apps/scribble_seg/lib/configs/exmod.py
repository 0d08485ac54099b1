from monailabel.interfaces.config import TaskConfig

from lib.networks import ExModUNet
from lib.trainers.exmod import ExModTrainTask

from .recipe import MixRecipeConfig


class Exmod(MixRecipeConfig, TaskConfig):
    """``exmod``: ExMod / CycleMix -- expanded 2D UNet (slice-wise), pCE on original and mixed
    slices, occlusion, global and local consistency.

    Conf: ``unet2d_features`` (JSON, default ``[64, 128, 256, 512, 1024]``), ``mix_occlusion`` (32 px),
    ``mix`` (``cutmix`` or ``mixup``), ``exmod_global_weight`` / ``exmod_local_weight`` (0.1)."""

    description = "ExMod/CycleMix: expanded 2D UNet, saliency-guided mix + occlusion, mix and integrity consistency"
    trainer_class = ExModTrainTask
    network_class = ExModUNet

    def recipe_kwargs(self):
        return {
            "global_weight": float(self.conf.get("exmod_global_weight", 0.1)),
            "local_weight": float(self.conf.get("exmod_local_weight", 0.1)),
        }
