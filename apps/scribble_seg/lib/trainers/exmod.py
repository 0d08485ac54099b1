"""``exmod``: ExMod / CycleMix (Zhang & Zhuang, CVPR 2022): mix augmentation, occlusion and
mix / integrity consistency on a slice-wise 2D UNet (reference section 2.3)::

    L = pCE(p(x), s) + pCE(p(x~), s~) + w_g * L_global + w_l * L_local

per iteration, on the 2D slices of the batch's patches (``(B, 1, H, W, D)`` -> ``B * D`` slices):
``x~, s~`` = occlusion of the saliency-guided CutMix of each slice with another slice of the
batch (:mod:`lib.scribbles.mixing`; saliency = the partner's intensity-gradient magnitude, a
documented simplification of Puzzle Mix's loss-gradient saliency); ``L_global`` compares the
mixed prediction with the mix of the predictions outside the occlusion, ``L_local`` the
prediction with its largest connected components (:mod:`lib.losses.consistency`). ExMod/CycleMix
weights: ``w_g = w_l = 0.1``.
"""

from typing import Dict

import torch
import torch.nn.functional as F

from lib.losses import PartialCrossEntropyLoss
from lib.losses.consistency import global_consistency, local_consistency
from lib.networks import final_logits
from lib.scribbles.convention import UNANNOTATED
from lib.scribbles.mixing import mixup, occlude, saliency_cutmix
from lib.transforms import BackgroundBeyondStrokesd

from .base import ScribbleTrainTask


def to_slices(t: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W, D)`` -> ``(B * D, C, H, W)``."""
    b, c, h, w, d = t.shape
    return t.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """In-plane intensity-gradient magnitude of ``(N, 1, H, W)`` slices (saliency)."""
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    return torch.sqrt(gx**2 + gy**2)


class ExModTrainTask(ScribbleTrainTask):
    """ExMod / CycleMix losses (see the module docstring).

    Args:
        global_weight, local_weight: ``w_g``, ``w_l``.
        occlusion: side of the occluded square (pixels).
        mix_alpha: ``lambda ~ Beta(alpha, alpha)``.
        mix: ``cutmix`` (saliency-guided, default), ``mixup`` (plain, the benchmark's comparison) or
            ``none`` (ablation: no mixed branch, no mix consistency).
        outer_slices_background: the slices beyond the stroked range are background strokes
            (:class:`lib.transforms.BackgroundBeyondStrokesd`): the slice-wise network gets a signal
            on the slices above and below the structures, which carry no stroke.
        pce_mean: ``annotated`` or ``all`` (CycleMix's normalisation of the partial CE,
            :class:`lib.losses.PartialCrossEntropyLoss`).
    """

    def __init__(
        self,
        *args,
        global_weight: float = 0.1,
        local_weight: float = 0.1,
        occlusion: int = 32,
        mix_alpha: float = 0.5,
        mix: str = "cutmix",
        outer_slices_background: bool = False,
        pce_mean: str = "annotated",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if pce_mean not in ("annotated", "all"):
            raise ValueError(f"pce_mean must be 'annotated' or 'all', got {pce_mean!r}")
        self.outer_slices_background, self.pce_mean = bool(outer_slices_background), pce_mean
        if mix not in ("cutmix", "mixup", "none"):
            raise ValueError(f"mix must be 'cutmix' (saliency-guided), 'mixup' or 'none', got {mix!r}")
        self.mix = mix
        self.global_weight, self.local_weight = float(global_weight), float(local_weight)
        self.occlusion, self.mix_alpha = int(occlusion), float(mix_alpha)

    def loss_function(self, context):
        return PartialCrossEntropyLoss(self.convention, mean=self.pce_mean)

    def recipe_transforms(self, context):
        return [BackgroundBeyondStrokesd("label", self.convention)] if self.outer_slices_background else []

    def local_term(self, probabilities: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
        """``L_local`` on 2D probabilities ``(N, C, H, W)`` (ExMod: cosine to the LCC one-hot)."""
        return local_consistency(probabilities)

    def extra_terms(self, engine, probabilities, image, scribbles) -> Dict[str, torch.Tensor]:
        """Recipe additions on the 2D slices (ZScribbleSeg: EM + spatial prior)."""
        return {}

    def compute_loss(self, engine, outputs, batch):
        pce = engine.loss_function
        logits = to_slices(final_logits(outputs))
        x, s = to_slices(batch["image"]), to_slices(batch["label"])
        p = torch.softmax(logits.float(), dim=1)
        terms = {"sup": pce(logits, s)}

        annotated = self.convention.annotated(s)[:, 0]
        zero = torch.zeros((), device=x.device)
        perm = torch.roll(torch.arange(x.shape[0], device=x.device), 1)
        if self.mix == "none":  # ablation: no mixed branch, hence no mix consistency either
            terms["mix"], terms["global"] = zero, zero
        elif self.mix == "mixup":
            x_mix, m = mixup(x, x[perm], self.mix_alpha)
            x_mix, s_a, kept = occlude(x_mix, s, self.occlusion)
            s_b = s[perm].masked_fill(kept == 0, UNANNOTATED)
            logits_mix = final_logits(engine.network(x_mix))
            lam = float(m.flatten()[0])
            terms["mix"] = lam * pce(logits_mix, s_a) + (1 - lam) * pce(logits_mix, s_b)
        else:
            x_mix, s_mix, m = saliency_cutmix(x, s, x[perm], s[perm], gradient_magnitude(x[perm]), self.mix_alpha)
            x_mix, s_mix, kept = occlude(x_mix, s_mix, self.occlusion)
            logits_mix = final_logits(engine.network(x_mix))
            terms["mix"] = pce(logits_mix, s_mix)
        if self.mix != "none":
            terms["global"] = global_consistency(torch.softmax(logits_mix.float(), 1), p, p[perm], m, kept)
        terms["local"] = self.local_term(p, annotated) if self.local_weight > 0 else zero
        extra = self.extra_terms(engine, p, x, s)
        terms.update(extra)
        terms["loss"] = (
            terms["sup"]
            + terms["mix"]
            + self.global_weight * terms["global"]
            + self.local_weight * terms["local"]
            + sum(extra.values(), zero)
        )
        return terms
