"""``full``: the ``pce`` losses on dense masks (every voxel annotated): cross-entropy + Dice.
The fully supervised upper bound of the benchmarks; never what annotators train."""

from .pce import PceTrainTask


class FullTrainTask(PceTrainTask):
    """Cross-entropy + Dice on dense ground truth."""

    dense_targets = True
