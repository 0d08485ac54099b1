"""``pce``: partial cross-entropy + masked Dice on the scribbles (the weak-supervision baseline).

    L = pCE(final, s) + MaskedDice(final, s)

over the annotated voxels of the scribble map ``s`` only (:mod:`lib.losses`).
"""

import torch

from lib.losses import MaskedDiceLoss, PartialCrossEntropyLoss
from lib.networks import final_logits

from .base import ScribbleTrainTask


class PceTrainTask(ScribbleTrainTask):
    """Partial cross-entropy + masked Dice."""

    def loss_function(self, context):
        return torch.nn.ModuleDict(
            {"pce": PartialCrossEntropyLoss(self.convention), "dice": MaskedDiceLoss(self.convention)}
        )

    def compute_loss(self, engine, outputs, batch):
        logits = final_logits(outputs)
        pce = engine.loss_function["pce"](logits, batch["label"])
        dice = engine.loss_function["dice"](logits, batch["label"])
        return {"loss": pce + dice, "pce": pce, "dice": dice}
