"""``can_em``: Can et al., "Learning to segment medical images with scribble-supervision alone"
(DLMIA 2018) -- seed areas, then recursive hard EM.

    E0:  y^0 = seed areas of the scribbles (random walk, P_c > tau; the rest unknown)
    for r = 1..R (each M step continues from the previous weights):
        M:  theta^r = argmin pCE(f_theta(x), y^{r-1})          (unknown voxels ignored)
        E:  y^r = relabel(f_theta^r(x))                        (not after the last recursion)

The E step (:func:`lib.scribbles.relabel.relabel`) takes the network's argmax, optionally a 3D
dense CRF on its softmax with the seed areas clamped (Can et al.'s CRF weights,
:meth:`lib.scribbles.crf.DenseCRFParams.can_et_al`) and optionally the MC-dropout Welch test
(``passes`` stochastic passes, p >= alpha -> unknown); seed areas always keep their class. It
works at the training spacing on every training volume; the relabelled maps are also saved
under the datastore tag ``relabel_tag`` (at the image's grid, convention scribble maps) so an
annotator can look at them in 3D Slicer.

The epoch budget ``max_epochs`` is the total, split evenly over the recursions, so ``can_em``
trains as long as the other recipes given the same request; ``epochs_per_recursion`` > 0 gives
every recursion that many epochs instead (the paper trains each to convergence). Training stats
(``GET /train/``) gain ``recursions``: per recursion, the fraction of voxels labelled, the fraction changed by its
E step, the validation Dice and the relabelling time per volume.
"""

import logging
import math
import os
import tempfile
import time
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from monai.data import MetaTensor
from monai.handlers import LrScheduleHandler
from monai.transforms import Compose, LoadImage, ResampleToMatch, SaveImage, Spacing

from lib.activelearning.uncertainty import enable_mc_dropout, mc_dropout_maps, passes_per_forward
from lib.datasets.sample import label_info
from lib.infers.inferer import SegmentationInferer
from lib.losses import PartialCrossEntropyLoss
from lib.scribbles.convention import NO_SEED
from lib.scribbles.crf import DenseCRFParams
from lib.scribbles.random_walk import RandomWalkParams
from lib.scribbles.relabel import DEFAULT_ALPHA, MC_PASSES, relabel
from lib.scribbles.seed_areas import DEFAULT_TAU
from lib.transforms import BackgroundBeyondStrokesd, CurrentLabelsd, SeedAreasd

from .base import ScribbleTrainTask
from .parameters import integer

logger = logging.getLogger(__name__)


def continued_decay(recursion: int, recursions: int, epochs: int, power: float = 0.9):
    """Learning-rate factor of epoch ``e`` of M step ``recursion`` (0-based) when one polynomial
    decay spans all ``recursions`` of ``epochs`` epochs each: ``(1 - (r E + e) / (R E))^power``."""
    total = recursions * epochs
    return lambda epoch: max(0.0, 1.0 - (recursion * epochs + min(epoch, epochs)) / total) ** power


class CanEMTrainTask(ScribbleTrainTask):
    """Can et al.'s recursive training (see the module docstring).

    Args:
        recursions: ``R`` (request key ``recursions``).
        epochs_per_recursion: epochs of each M step (request key of the same name); 0 splits
            ``max_epochs`` over the recursions.
        tau, beta: seed-area threshold and random-walk beta.
        crf: dense-CRF parameters of the E step, ``None`` for none.
        uncertainty: MC-dropout Welch test in the E step.
        passes: MC-dropout passes ``T`` (request key ``mc_passes``); ``mc_batch`` per forward
            (``None``: by device, :func:`lib.activelearning.uncertainty.passes_per_forward`).
        alpha: significance level of the Welch test.
        relabel_tag: datastore tag of the relabelled maps (empty: not saved).
        seed_areas_per_slice: one 2D walk per stroked slice (the paper's) instead of one 3D walk.
        crf_per_slice: the E step's CRF per slice on z-scored intensities (the paper's).
        outer_slices_background: the slices beyond the first and last stroked one are background
            strokes before the seed areas grow (right when every slice showing a structure was
            scribbled): the walk, every M step and every E step keep them background.
        continued_schedule: the learning rate follows one polynomial decay over all recursions
            (recursion ``r`` of ``R``, epoch ``e`` of ``E``: ``lr * (1 - (r E + e) / (R E))^0.9``), as
            Can et al.'s optimiser carries on from recursion to recursion; off, every M step starts
            again at ``lr`` and decays to 0.
    """

    parameters = {"recursions": integer(1), "epochs_per_recursion": integer(0), "mc_passes": integer(1)}

    def __init__(
        self,
        *args,
        recursions: int = 3,
        epochs_per_recursion: int = 0,
        tau: float = DEFAULT_TAU,
        beta: float = RandomWalkParams.beta,
        crf: Optional[DenseCRFParams] = DenseCRFParams.can_et_al(),
        uncertainty: bool = True,
        passes: int = MC_PASSES,
        mc_batch: Optional[int] = None,
        alpha: float = DEFAULT_ALPHA,
        relabel_tag: str = "can_em",
        seed_areas_per_slice: bool = False,
        crf_per_slice: bool = False,
        continued_schedule: bool = False,
        outer_slices_background: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self._config.update(
            {"recursions": int(recursions), "epochs_per_recursion": int(epochs_per_recursion), "mc_passes": int(passes)}
        )
        self.tau, self.beta, self.crf, self.uncertainty = tau, beta, crf, uncertainty
        self.mc_batch, self.alpha, self.relabel_tag = mc_batch, float(alpha), relabel_tag
        self.seed_areas_per_slice, self.crf_per_slice = bool(seed_areas_per_slice), bool(crf_per_slice)
        self.continued_schedule = bool(continued_schedule)
        self.outer_slices_background = bool(outer_slices_background)
        self._datastore = None
        self._relabelled: Dict[str, np.ndarray] = {}

    def __call__(self, request, datastore):
        self._datastore, self._relabelled = datastore, {}
        return super().__call__(request, datastore)

    # ------------------------------------------------------------------------ data / loss
    def _seed_areas_transform(self, request) -> SeedAreasd:
        return SeedAreasd(
            "label",
            self.convention,
            request["target_spacing"],
            self.tau,
            self.beta,
            cache_dir=os.path.join(self._model_dir, "seed_area_cache"),
            per_slice=self.seed_areas_per_slice,
        )

    def seed_area_transforms(self, request) -> list:
        """Scribbles -> seed areas, the outer slices made background first when asked: the part of the
        pipeline a benchmark replays to score the seed areas against the truth."""
        outer = [BackgroundBeyondStrokesd("label", self.convention)] if self.outer_slices_background else []
        return outer + [self._seed_areas_transform(request)]

    def recipe_transforms(self, context):
        return self.seed_area_transforms(context.request) + [CurrentLabelsd("label", self._relabelled)]

    def loss_function(self, context):
        return PartialCrossEntropyLoss(self.convention)

    def lr_scheduler_handler(self, context):
        if not self.continued_schedule:
            return super().lr_scheduler_handler(context)
        factor = continued_decay(
            int(context.request.get("recursion_index", 0)),
            int(context.request.get("recursion_count", 1)),
            max(1, int(context.max_epochs)),
        )
        return LrScheduleHandler(torch.optim.lr_scheduler.LambdaLR(context.optimizer, factor), print_lr=False)

    # -------------------------------------------------------------------------- recursion
    def train(self, rank, world_size, request, datalist):
        recursions = int(request.get("recursions", 3))
        if recursions < 1:
            raise ValueError(f"recursions must be >= 1, got {recursions}")
        per_recursion = int(request.get("epochs_per_recursion") or 0)
        if per_recursion < 0:
            raise ValueError(f"epochs_per_recursion must be >= 0, got {per_recursion}")
        per_recursion = per_recursion or max(1, math.ceil(int(request["max_epochs"]) / recursions))
        train_items, _ = self.partition_datalist(SimpleNamespace(datalist=datalist, request=request))
        seed_maps = self._seed_area_maps(request, train_items)
        history: List[Dict[str, Any]] = []
        stats: Dict[str, Any] = {}
        for r in range(recursions):
            # what CurrentLabelsd hands this M step: the last E step's map, else the seed areas
            labels = {i: self._relabelled.get(i, m) for i, m in seed_maps.items()}
            m_step = {**request, "max_epochs": per_recursion, "recursion_index": r, "recursion_count": recursions}
            stats = super().train(rank, world_size, m_step, datalist)
            entry = {
                "recursion": r + 1,
                "epochs": per_recursion,
                "labelled_fraction": float(np.mean([np.mean(self.convention.annotated(v)) for v in labels.values()])),
                "best_metric": stats.get("best_metric"),
            }
            if rank == 0 and r + 1 < recursions:
                entry.update(self._e_step(request, train_items, seed_maps, labels, r + 1))
            history.append(entry)
            logger.info(f"can_em recursion {r + 1}/{recursions}: {entry}")
            if rank == 0:
                self.record_stats("recursions", history)
        stats["recursions"] = history
        return stats

    def _seed_area_maps(self, request, items) -> Dict[str, np.ndarray]:
        """Seed areas (scribble maps at the training spacing) of the training volumes, computed
        once per run (and cached on disk for the M steps' data pipeline)."""
        pipeline = Compose(
            self.load_transforms(SimpleNamespace(request=request), with_gt=False) + self.seed_area_transforms(request)
        )
        return {item["id"]: np.asarray(pipeline(dict(item))["label"][0]) for item in items}

    def _trained_network(self, request, device) -> torch.nn.Module:
        """The weights the M step just produced (best checkpoint of this run)."""
        network = self.network(SimpleNamespace(request=request)).to(device)  # weights loaded below
        path = self.load_path(os.path.join(self._model_dir, request["name"]), pretrained=False)
        state = torch.load(path, map_location=device, weights_only=True)
        network.load_state_dict(state.get(self._model_dict_key, state))
        return enable_mc_dropout(network) if self.uncertainty else network.eval()

    def _e_step(
        self, request, items, seed_maps: Dict[str, np.ndarray], previous: Dict[str, np.ndarray], recursion: int
    ) -> Dict[str, Any]:
        device = request["device"] if isinstance(request["device"], torch.device) else torch.device(request["device"])
        network, inferer = self._trained_network(request, device), SegmentationInferer()
        passes = int(request.get("mc_passes", self._config["mc_passes"]))
        spacing = request["target_spacing"]
        load = Compose(self.load_transforms(SimpleNamespace(request=request), with_gt=False))
        changed, labelled, start = [], [], time.time()
        for item in items:
            d = load(dict(item))
            image = d["image"][None].to(device)
            seeds = self.convention.seeds(seed_maps[item["id"]])
            with torch.no_grad():
                if self.uncertainty:
                    maps = mc_dropout_maps(
                        lambda b: inferer(b, network),
                        image,
                        passes,
                        passes_per_forward(device, self.mc_batch),
                        logit_moments=True,
                    )
                    moments = {
                        "logit_mean": maps["logit_mean"].cpu().numpy(),
                        "logit_var": maps["logit_var"].cpu().numpy(),
                        "passes": passes,
                    }
                    probabilities = maps["probabilities"].cpu().numpy()
                else:
                    moments = {}
                    probabilities = torch.softmax(inferer(image, network).float(), 1)[0].cpu().numpy()
            label = relabel(
                probabilities,
                seeds,
                image=d["image"][0].numpy(),
                spacing=spacing,
                crf=self.crf,
                alpha=self.alpha,
                crf_per_slice=self.crf_per_slice,
                **moments,
            )
            new = self.convention.from_seeds(label)
            changed.append(float(np.mean(new != previous[item["id"]])))
            labelled.append(float(np.mean(label != NO_SEED)))
            self._relabelled[item["id"]] = new.astype(np.int16)
            self._save(item, new, spacing, recursion)
        seconds = (time.time() - start) / max(1, len(items))
        return {
            "relabelled_fraction": float(np.mean(labelled)),
            "changed_fraction": float(np.mean(changed)),
            "relabel_seconds_per_volume": round(seconds, 2),
        }

    def _save(self, item, scribble_map: np.ndarray, spacing, recursion: int) -> None:
        """The relabelled map at the image's grid, under the datastore tag ``relabel_tag``."""
        if not (self._datastore and self.relabel_tag):
            return
        image = LoadImage(image_only=True, ensure_channel_first=True)(item["image"])
        working = Spacing(pixdim=spacing, mode="nearest")(image)
        label = MetaTensor(torch.as_tensor(scribble_map, dtype=torch.float32)[None], affine=working.affine)
        back = ResampleToMatch(mode="nearest")(label, img_dst=image)
        with tempfile.TemporaryDirectory() as tmp:
            SaveImage(
                output_dir=tmp,
                output_postfix="",
                output_ext=".nii.gz",
                separate_folder=False,
                output_dtype=np.uint8,
                resample=False,
                print_log=False,
            )(back.to(torch.uint8), image.meta)
            path = next(os.path.join(tmp, f) for f in os.listdir(tmp))
            self._datastore.save_label(
                item["id"], path, self.relabel_tag, {"label_info": label_info(self.convention), "recursion": recursion}
            )
