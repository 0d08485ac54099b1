import json

from lib.networks import ExModUNet
from lib.trainers.exmod import ExModTrainTask

from monailabel.interfaces.config import TaskConfig

from .recipe import RecipeConfig


class Exmod(RecipeConfig, TaskConfig):
    """``exmod``: ExMod / CycleMix -- expanded 2D UNet (slice-wise), pCE on original and mixed
    slices, occlusion, global and local consistency.

    Conf: ``unet2d_features`` (JSON, default ``[64, 128, 256, 512, 1024]``), ``mix_occlusion`` (32 px), ``mix`` (``cutmix`` or ``mixup``),
    ``exmod_global_weight`` / ``exmod_local_weight`` (0.1)."""

    description = "ExMod/CycleMix: expanded 2D UNet, saliency-guided mix + occlusion, mix and integrity consistency"
    trainer_class = ExModTrainTask

    def build_network(self, conf):
        return ExModUNet(out_channels=self.convention.num_classes, dropout=float(conf.get("dropout", 0.1)),
                         features=json.loads(conf.get("unet2d_features", "[64, 128, 256, 512, 1024]")))

    def trainer_kwargs(self):
        return {"occlusion": int(self.conf.get("mix_occlusion", 32)), "mix": self.conf.get("mix", "cutmix"),
                "global_weight": float(self.conf.get("exmod_global_weight", 0.1)),
                "local_weight": float(self.conf.get("exmod_local_weight", 0.1))}
