from monailabel.interfaces.config import TaskConfig

from lib.trainers.weaknet import WeakNetTrainTask

from .recipe import RecipeConfig


class Weaknet(RecipeConfig, TaskConfig):
    """``weaknet``: Weak-Net -- templates deformed to sparse surface points (datastore tag
    ``points_tag``), 2.5D attention UNet segmenter + reconstruction UNet, boundary-weighted MSE.

    Conf: ``weaknet_lambda`` (1.0), ``weaknet_boundary_mm`` (5), ``weaknet_low_weight`` (0.1),
    ``weaknet_threshold`` (gamma, 0.5)."""

    description = "Weak-Net: templates fitted to surface points + segmentation/reconstruction networks"
    trainer_class = WeakNetTrainTask

    def trainer_kwargs(self):
        conf = self.conf
        return {
            "points_tag": conf.get("points_tag", "points"),
            "reconstruction_weight": float(conf.get("weaknet_lambda", 1.0)),
            "boundary_mm": float(conf.get("weaknet_boundary_mm", 5.0)),
            "low_weight": float(conf.get("weaknet_low_weight", 0.1)),
        }

    def infer_kwargs(self):
        return {"foreground_threshold": float(self.conf.get("weaknet_threshold", 0.5))}
