"""``zscribbleseg``: ZScribbleSeg (Zhang & Zhuang): the CycleMix losses with ZScribbleSeg's
changes, plus EM mixture ratios and the spatial prior (reference section 2.4)::

    L = pCE(p(x), s) + pCE(p(x~), s~) + 0.05 * L_global + L_integrity(CE on unannotated)
        + L_prior                                         (from epoch ``prior_start_epoch`` on)

``L_prior`` (:mod:`lib.losses.spatial_prior`): the mixture ratios ``pi`` of the batch's
unannotated voxels are re-estimated by EM from ``pi^0`` (the scribbles' class frequencies), then
voxels with a low spatial affinity to class ``k`` (below their ``1 - pi_k`` rank) are pushed away
from ``k``. An EM estimate that ran off (a class beyond ``max_ratio`` times its ``pi^0``, see
:func:`lib.losses.spatial_prior.plausible_mixture_ratios`) is replaced by ``pi^0``; the share of
such batches is reported in the stats (``mixture_ratios.fallback_fraction``).
The paper switches it on after epoch 60 of its long schedule; here after
``prior_start_epoch`` epochs (conf).
"""

from typing import Any, Dict

import torch

from lib.losses.consistency import local_cross_entropy
from lib.losses.spatial_prior import em_mixture_ratios, plausible_mixture_ratios, scribble_priors, spatial_prior_loss

from .exmod import ExModTrainTask


class ZScribbleSegTrainTask(ExModTrainTask):
    """ZScribbleSeg (see the module docstring).

    Args:
        prior_start_epoch: first epoch (1-based) with the EM + spatial-prior loss.
        prior_weight: weight of ``L_prior``.
        sigma_xy_mm, sigma_intensity, radius: the spatial kernel (6 mm-equivalent, 0.1, 8 px in the code).
        max_ratio: an EM estimate is used only within this factor of ``pi^0`` (per class).
    """

    def __init__(
        self,
        *args,
        prior_start_epoch: int = 5,
        prior_weight: float = 1.0,
        sigma_xy_mm: float = 6.0,
        sigma_intensity: float = 0.1,
        radius: int = 8,
        global_weight: float = 0.05,
        local_weight: float = 1.0,
        max_ratio: float = 4.0,
        **kwargs,
    ):
        super().__init__(*args, global_weight=global_weight, local_weight=local_weight, **kwargs)
        self.prior_start_epoch, self.prior_weight = int(prior_start_epoch), float(prior_weight)
        self.max_ratio = float(max_ratio)
        self.kernel = {
            "sigma_xy_mm": float(sigma_xy_mm),
            "sigma_intensity": float(sigma_intensity),
            "radius": int(radius),
        }
        self._in_plane = None  # mm, set per run from the training spacing
        self._pi: Dict[str, Any] = {}

    def train(self, rank, world_size, request, datalist):
        """MONAI Label's run, then the mixture ratios EM estimated over the last epoch (mean over
        its batches), those the prior used (after fallbacks), the scribbles' class frequencies and
        the share of batches that fell back go into the stats as ``mixture_ratios``."""
        self._pi = {}
        stats = super().train(rank, world_size, request, datalist)
        if self._pi.get("n"):
            ratios = {
                "estimated": (self._pi["sum"] / self._pi["n"]).tolist(),
                "used": (self._pi["sum_used"] / self._pi["n"]).tolist(),
                "scribbles": (self._pi["sum0"] / self._pi["n"]).tolist(),
                "epoch": self._pi["epoch"],
                "fallback_fraction": self._pi["fallbacks"] / self._pi["n"],
                "classes": ["background"] + list(self.convention.labels),
            }
            stats["mixture_ratios"] = ratios
            if rank == 0:
                self.record_stats("mixture_ratios", ratios)
        return stats

    def local_term(self, probabilities, annotated):
        return local_cross_entropy(probabilities, annotated)

    def extra_terms(self, engine, probabilities, image, scribbles) -> Dict[str, torch.Tensor]:
        if engine.state.epoch < self.prior_start_epoch or self.prior_weight <= 0:
            return {}
        targets, annotated = self.convention.targets(scribbles[:, 0])
        unannotated = ~annotated
        pi0 = scribble_priors(targets, annotated, probabilities.shape[1])
        estimate = em_mixture_ratios(probabilities.permute(0, 2, 3, 1)[unannotated], pi0)
        pi, used = plausible_mixture_ratios(estimate, pi0, self.max_ratio)
        if self._pi.get("epoch") != engine.state.epoch:
            zero = torch.zeros_like(pi.cpu())
            self._pi = {
                "epoch": engine.state.epoch,
                "sum": zero.clone(),
                "sum_used": zero.clone(),
                "sum0": zero.clone(),
                "n": 0,
                "fallbacks": 0,
            }
        self._pi["sum"] += estimate.cpu()
        self._pi["sum_used"] += pi.cpu()
        self._pi["sum0"] += pi0.cpu()
        self._pi["n"] += 1
        self._pi["fallbacks"] += int(not used)
        prior = spatial_prior_loss(
            probabilities, image, unannotated, pi.to(probabilities.device), self._in_plane, **self.kernel
        )
        return {"prior": self.prior_weight * prior}

    def train_pre_transforms(self, context):
        self._in_plane = [float(v) for v in context.request["target_spacing"][:2]]
        return super().train_pre_transforms(context)
