"""``scribble2d5``: Scribble2D5 (Chen et al., MICCAI 2022), complete and with working gradients.

    L = beta1 * L_bry(b, B) + pCE(M_init, M_pseudo) + pCE(M_final, M_pseudo) + beta2 * L_AB(softmax(M_final), v)

* ``M_pseudo``: the supervoxel pseudo mask of the label propagation module, a scribble map
  whose unannotated voxels are those outside ``M_voxel`` (:mod:`lib.scribbles.propagation`,
  cached on disk per volume);
* ``L_bry``: class-balanced cross-entropy of the boundary head against the static pseudo
  boundary ``B`` (per-slice Canny, :mod:`lib.losses.boundary`);
* ``L_AB``: the 3D active boundary loss on probabilities with spacing-aware differences
  (:mod:`lib.losses.active_boundary`), lambda1 = 1, lambda2 = 0.1;
* beta1 = beta2 = 0.3 (paper); optional attention deep supervision (binary cross-entropy of each
  attention map against the max-pooled annotated foreground).

Ablations (paper Table 2) are switches: ``lpm`` (off: the raw scribbles replace ``M_pseudo``),
``boundary`` (off: no static boundary module -- no boundary/refinement heads, no ``L_bry``) and
``abl`` (off: no ``L_AB``).
"""

import os

import torch
import torch.nn.functional as F

from lib.losses import ActiveBoundaryLoss, BoundaryLoss, PartialCrossEntropyLoss
from lib.scribbles.convention import BACKGROUND_CLASS
from lib.scribbles.propagation import PropagationParams
from lib.transforms import PropagateScribblesd

from .base import ScribbleTrainTask


class Scribble2D5TrainTask(ScribbleTrainTask):
    """Scribble2D5 recipe (see the module docstring).

    Args:
        lpm: train against the supervoxel pseudo mask (else the raw scribbles).
        boundary: static boundary prediction module (the network must have its boundary head).
        abl: active boundary loss.
        beta_boundary, beta_abl: ``beta1``, ``beta2``.
        attention_supervision: weight of the attention deep supervision (0 = off).
        propagation: supervoxel / edge parameters.
    """

    def __init__(
        self,
        *args,
        lpm: bool = True,
        boundary: bool = True,
        abl: bool = True,
        beta_boundary: float = 0.3,
        beta_abl: float = 0.3,
        attention_supervision: float = 0.0,
        propagation: PropagationParams = PropagationParams(),
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.lpm, self.boundary, self.abl = lpm, boundary, abl
        self.beta_boundary, self.beta_abl, self.attention_supervision = beta_boundary, beta_abl, attention_supervision
        self.propagation = propagation

    def recipe_transforms(self, context):
        if not (self.lpm or self.boundary):
            return []
        cache = os.path.join(self._model_dir, "propagation_cache")
        return [
            PropagateScribblesd("label", self.convention, context.request["target_spacing"], self.propagation, cache)
        ]

    def extra_batch_keys(self, context):
        return (["pseudo"] if self.lpm else []) + (["boundary"] if self.boundary else [])

    def loss_function(self, context):
        return torch.nn.ModuleDict(
            {
                "pce": PartialCrossEntropyLoss(self.convention),
                "boundary": BoundaryLoss(),
                "abl": ActiveBoundaryLoss(context.request["target_spacing"]),
            }
        )

    def compute_loss(self, engine, outputs, batch):
        losses = engine.loss_function
        target = batch["pseudo"] if self.lpm else batch["label"]
        terms = {
            "seg_initial": losses["pce"](outputs["initial"], target),
            "seg_final": losses["pce"](outputs["final"], target),
        }
        total = terms["seg_initial"] + terms["seg_final"]
        if self.boundary:
            terms["boundary"] = losses["boundary"](outputs["boundary"], batch["boundary"])
            total = total + self.beta_boundary * terms["boundary"]
        if self.abl:
            terms["abl"] = losses["abl"](torch.softmax(outputs["final"].float(), dim=1), batch["image"])
            total = total + self.beta_abl * terms["abl"]
        if self.attention_supervision > 0 and outputs.get("attention"):
            terms["attention"] = self._attention_loss(outputs["attention"], target)
            total = total + self.attention_supervision * terms["attention"]
        terms["loss"] = total
        return terms

    def _attention_loss(self, maps, target):
        """BCE of each attention map vs the max-pooled foreground, on max-pooled annotated voxels."""
        class_index, annotated = self.convention.targets(target)
        fg = ((class_index != BACKGROUND_CLASS) & annotated).float()
        ann = annotated.float()
        loss = 0.0
        for a in maps:
            size = a.shape[2:]
            t = F.adaptive_max_pool3d(fg, size)
            m = F.adaptive_max_pool3d(ann, size)
            bce = F.binary_cross_entropy(a.float().clamp(1e-6, 1 - 1e-6), t, reduction="none")
            loss = loss + (bce * m).sum() / m.sum().clamp_min(1.0)
        return loss / len(maps)
