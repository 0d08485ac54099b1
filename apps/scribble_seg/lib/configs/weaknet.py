from monailabel.interfaces.config import TaskConfig

from lib.conf import conf_float, conf_text
from lib.trainers.weaknet import WeakNetTrainTask

from .recipe import RecipeConfig


class Weaknet(RecipeConfig, TaskConfig):
    """``weaknet``: Weak-Net -- templates deformed to sparse surface points (datastore tag
    ``points_tag``), 2.5D attention UNet segmenter + reconstruction UNet, boundary-weighted MSE.

    Conf: ``points_tag`` and the ``weaknet_*`` keys of :mod:`lib.conf`."""

    description = "Weak-Net: templates fitted to surface points + segmentation/reconstruction networks"
    trainer_class = WeakNetTrainTask

    def trainer_kwargs(self):
        conf = self.conf
        return {
            "points_tag": conf_text(conf, "points_tag"),
            "reconstruction_weight": conf_float(conf, "weaknet_lambda", minimum=0),
            "boundary_mm": conf_float(conf, "weaknet_boundary_mm", minimum=0),
            "low_weight": conf_float(conf, "weaknet_low_weight", minimum=0, maximum=1),
        }

    def infer_kwargs(self):
        return {"foreground_threshold": conf_float(self.conf, "weaknet_threshold", minimum=0, maximum=1)}
