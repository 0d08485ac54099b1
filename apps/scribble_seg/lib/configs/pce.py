from monailabel.interfaces.config import TaskConfig

from lib.trainers.pce import PceTrainTask

from .recipe import RecipeConfig


class Pce(RecipeConfig, TaskConfig):
    """``pce``: the 2.5D attention UNet trained with partial cross-entropy + masked Dice on scribbles
    (the baseline every scribble paper beats)."""

    trainer_class = PceTrainTask
    description = "2.5D attention UNet, partial cross-entropy + masked Dice on scribbles (baseline)"
