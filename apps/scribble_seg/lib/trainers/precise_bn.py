"""Precise BatchNorm statistics before validation and publishing (Wu & Johnson, "Rethinking
'Batch' in BatchNorm", 2021; Detectron2's ``PreciseBN``).

BatchNorm's running mean/variance are an exponential average (momentum 0.1) of batch statistics
taken while the weights move; after a short run -- an annotation loop retrains often and
briefly -- they lag the weights and eval-mode predictions can be much worse than train-mode
ones. Recalibration re-estimates them as the
plain average over ``n`` training batches with frozen weights.
"""

import itertools
import logging
from typing import Callable, Iterable

import torch

logger = logging.getLogger(__name__)

_BN = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)


@torch.no_grad()
def recalibrate_batchnorm(network: torch.nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running statistics by their mean over ``inputs`` (weights frozen).

    Dropout stays off during the passes. Returns the number of batches used (0 = no BatchNorm or
    no input, statistics untouched).
    """
    bns = [m for m in network.modules() if isinstance(m, _BN)]
    if not bns:
        return 0
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    was_training = network.training
    network.eval()
    for m in bns:
        m.train()
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = plain mean over the batches
    n = 0
    try:
        for x in inputs:
            network(x)
            n += 1
    finally:
        for m, (momentum, mean, var, tracked) in zip(bns, saved):
            m.momentum = momentum
            if n == 0:
                m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(tracked)
        network.train(was_training)
    return n


class PreciseBatchNormHandler:
    """Ignite handler: at each trainer epoch end, recalibrate BatchNorm on ``num_batches`` batches
    of the training loader (attach it before the validation handler)."""

    def __init__(self, num_batches: int, prepare: Callable[[dict], torch.Tensor]):
        self.num_batches, self.prepare = num_batches, prepare

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        batches = (self.prepare(b) for b in itertools.islice(iter(engine.data_loader), self.num_batches))
        n = recalibrate_batchnorm(engine.network, batches)
        logger.info(f"Recalibrated BatchNorm statistics on {n} batches")
