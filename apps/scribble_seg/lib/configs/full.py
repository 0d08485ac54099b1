from monailabel.interfaces.config import TaskConfig

from lib.trainers.full import FullTrainTask

from .recipe import RecipeConfig


class Full(RecipeConfig, TaskConfig):
    """``full``: the same network and losses on dense masks -- the upper bound, for benchmarks.
    Needs dense ground truth (datastore tag ``gt`` or ``gt_dir`` in the train request)."""

    trainer_class = FullTrainTask
    description = "2.5D attention UNet trained on dense masks (upper bound; benchmarks only)"
    benchmark_only = True
