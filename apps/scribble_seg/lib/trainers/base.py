"""The base trainer every scribble recipe subclasses (MONAI Label ``BasicTrainTask`` adapter).

What it does, so that recipes only override their loss / targets / hooks:

* **data**: (image, scribble map) pairs from the datastore tag ``scribble_tag`` (default
  ``final``); each label is converted through the convention module (by name when it carries
  ``label_info``) and checked against its image's shape. Dense ground truth (datastore tag
  ``gt_tag`` or a ``gt_dir`` folder in the request) is only used for validation metrics, except
  by recipes that set ``dense_targets`` (the ``full`` upper bound).
* **geometry**: volumes are resampled to ``target_spacing`` (mm; ``"auto"`` = the per-axis median
  of the training volumes), kept in stored voxel order (slices along the last axis), z-scored.
* **patches**: random anisotropic patches (default 96 x 96 x 16) centred on an annotated voxel
  with probability ``pos_fraction``, random in-plane flips / 90-degree rotations, intensity
  scale and shift. An epoch is ``epoch_length`` iterations whatever the number of volumes
  (patches drawn with replacement), so budgets are comparable across datasets.
* **step**: a custom iteration hands the network's whole output and the whole batch to
  :meth:`ScribbleTrainTask.compute_loss` (AMP on CUDA).
* **precise BatchNorm**: at each epoch end the BN running statistics are re-estimated on
  ``bn_recalibration_batches`` training batches before validating / publishing
  (:mod:`lib.trainers.precise_bn`: short runs otherwise publish lagging statistics).
* **validation**: whole held-out volumes through the same inferer as the infer task; key metric
  ``val_scribble_dice`` (Dice on the annotated voxels of the held-out scribbles) and, where every
  validation volume has dense ground truth, ``val_dice``.
* **MONAI Label machinery kept**: train stats (``GET /train/``, ``/info`` ``train_stats``),
  checkpoints and publishing (``model/<name>.pt``), ``multi_gpu`` DDP, the device of the request.
  Next to the published model a ``model/<name>.json`` records the geometry the model was trained
  at; the infer task reads it.
"""

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from ignite.engine import Events
from ignite.handlers import EarlyStopping
from monai.data import ThreadDataLoader
from monai.engines.utils import IterationEvents
from monai.handlers import IgniteMetricHandler, LrScheduleHandler, from_engine, stopping_fn_from_metric
from monai.transforms import (
    EnsureChannelFirstd,
    EnsureTyped,
    FgBgToIndicesd,
    LoadImaged,
    NormalizeIntensityd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SelectItemsd,
    SpatialPadd,
)
from monai.utils import set_determinism
from monai.utils.enums import CommonKeys as Keys
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.basic_train import BasicTrainTask, Context
from torch.utils.data import RandomSampler

from lib.datasets.study import read_spacing
from lib.errors import RequestError
from lib.infers.inferer import SegmentationInferer
from lib.metrics import DiceMetric
from lib.model_meta import label_set_mismatch, meta_path
from lib.networks import final_logits, seeded_copy, size_divisor
from lib.scribbles.convention import ScribbleConvention
from lib.transforms import AnnotatedMaskd, ScribbleMapd, Spacingd

from .parameters import TRAINING_PARAMETERS, Parser, check_parameters
from .precise_bn import PreciseBatchNormHandler
from .publish import AtomicPublisher

logger = logging.getLogger(__name__)

GT_KEY = "gt"


def resolve_spacing(value, image_paths: Sequence[str]) -> List[float]:
    """``target_spacing`` as 3 floats: a list/JSON string as given, ``"auto"`` = per-axis median."""
    if isinstance(value, str) and value.strip().lower() != "auto":
        value = json.loads(value)
    if isinstance(value, str) or value is None:
        if not image_paths:
            raise RequestError("target_spacing 'auto' needs at least one training volume")
        return [float(s) for s in np.median([read_spacing(p) for p in image_paths], axis=0)]
    spacing = [float(s) for s in value]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise RequestError(f"target_spacing must be 3 positive numbers (mm) or 'auto', got {value}")
    return spacing


class ScribbleTrainTask(BasicTrainTask):
    """Base trainer: scribble pairs, patches, custom step, validation, publishing (see module doc).

    Args:
        model_dir: where runs, checkpoints and stats go (``model/<name>``).
        network: the network (copied for each run).
        convention: scribble convention of the app.
        publish_path: published weights (``model/<name>.pt``); ``<publish_path minus .pt>.json``
            gets the training geometry.
        load_path: weights to start from when ``pretrained`` is requested.
        scribble_tag: datastore tag of the training scribbles.
        gt_tag: datastore tag of dense ground truth (validation only).
        target_spacing: mm per axis, or ``"auto"``.
        patch_size: training patch size (a multiple of the network's stride product).
        config: overrides of the defaults shown in ``/info`` (and overridable per request).
    """

    dense_targets = False
    """Train on dense masks instead of scribbles (only the ``full`` upper bound sets this)."""

    parameters: Dict[str, Parser] = {}
    """The recipe's own request parameters (name -> parser, :mod:`lib.trainers.parameters`), on top
    of :data:`~lib.trainers.parameters.TRAINING_PARAMETERS`."""

    def __init__(
        self,
        model_dir: str,
        network: torch.nn.Module,
        convention: ScribbleConvention,
        publish_path: str,
        load_path: Optional[str] = None,
        description: str = "Train a segmentation network from scribbles",
        scribble_tag: str = "final",
        gt_tag: str = "gt",
        target_spacing="auto",
        patch_size: Sequence[int] = (96, 96, 16),
        config: Optional[Dict[str, Any]] = None,
        **kwargs,
    ):
        defaults = {
            "max_epochs": 20,
            "epoch_length": 50,
            "train_batch_size": 2,
            "val_batch_size": 1,
            "val_split": 0.2,
            "learning_rate": 1e-3,
            "weight_decay": 1e-4,
            "pos_fraction": 0.75,
            "bn_recalibration_batches": 16,
            "patch_size": list(patch_size),
            "target_spacing": target_spacing if isinstance(target_spacing, str) else list(target_spacing),
            "dataset": "CacheDataset",
            "dataloader": "ThreadDataLoader",
            "tracking": "None",
            "seed": 0,
        }
        defaults.update(config or {})
        super().__init__(
            model_dir,
            description,
            config=defaults,
            amp=torch.cuda.is_available(),  # mixed precision on CUDA only: on the CPU MONAI's GradScaler only warns
            load_path=load_path,
            publish_path=publish_path,
            labels=dict(convention.labels),
            disable_meta_tracking=True,
            tracking=None,
            **kwargs,
        )
        self._network = network
        self.convention = convention
        self.scribble_tag, self.gt_tag = scribble_tag, gt_tag
        self._extra_stats: Dict[str, Any] = {}

    def check_request(self, model: str, params: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """``params`` of a training request, converted; a 422 naming the first unknown key or bad
        value (the server asks this before MONAI Label starts the training subprocess)."""
        return check_parameters(model, params, {**TRAINING_PARAMETERS, **self.parameters}, size_divisor(self._network))

    def __call__(self, request, datastore: Datastore):
        self._extra_stats = {}  # recipe figures of this training request only (see record_stats)
        return super().__call__(request, datastore)

    # ----------------------------------------------------------------------------------- data
    def pre_process(self, request, datastore: Datastore) -> List[Dict[str, Any]]:
        """(image, label[, gt]) items: scribbles of ``scribble_tag`` (or dense masks for ``full``)."""
        gt_dir = request.get("gt_dir")
        items = []
        for image_id in sorted(datastore.list_images()):
            item: Dict[str, Any] = {"id": image_id, "image": datastore.get_image_uri(image_id)}
            gt = self._gt_path(datastore, image_id, gt_dir)
            if gt:
                item[GT_KEY] = gt
            if self.add_target(datastore, item):
                items.append(item)
        if not items:
            raise RequestError(self.missing_targets_message())
        request["target_spacing"] = resolve_spacing(request.get("target_spacing", "auto"), [i["image"] for i in items])
        logger.info(f"Training on {len(items)} volumes at {request['target_spacing']} mm")
        return items

    def add_target(self, datastore: Datastore, item: Dict[str, Any]) -> bool:
        """Put the volume's training target into ``item`` (``label``, optional ``label_info``);
        ``False`` when it has none. Default: its scribbles, or its dense mask for ``full``."""
        if self.dense_targets:
            item["label"] = item.get(GT_KEY)
            return bool(item["label"])
        label_id = datastore.get_label_by_image_id(item["id"], self.scribble_tag)
        if not label_id:
            return False
        item["label"] = datastore.get_label_uri(label_id, self.scribble_tag)
        item["label_info"] = datastore.get_label_info(label_id, self.scribble_tag).get("label_info") or []
        return True

    def missing_targets_message(self) -> str:
        what = (
            f"dense ground truth (tag '{self.gt_tag}' or gt_dir)"
            if self.dense_targets
            else f"scribbles under tag '{self.scribble_tag}'"
        )
        return f"no volume in the datastore has {what}: submit labels first"

    def _gt_path(self, datastore: Datastore, image_id: str, gt_dir: Optional[str]) -> Optional[str]:
        if gt_dir:
            for ext in (".nii.gz", ".nii", ".nrrd"):
                path = os.path.join(gt_dir, image_id + ext)
                if os.path.exists(path):
                    return path
            return None
        label_id = datastore.get_label_by_image_id(image_id, self.gt_tag)
        return datastore.get_label_uri(label_id, self.gt_tag) if label_id else None

    def partition_datalist(self, context: Context, shuffle=False):
        """Hold out whole volumes (seeded shuffle); no validation with fewer than 2 volumes."""
        datalist = list(context.datalist)
        val_split = float(context.request.get("val_split", 0.2))
        if context.request.get("val_ds") or context.request.get("train_ds"):
            return super().partition_datalist(context, shuffle)
        if len(datalist) < 2 or val_split <= 0:
            return datalist, []
        order = np.random.default_rng(int(context.request.get("seed", 0))).permutation(len(datalist))
        n_val = min(len(datalist) - 1, max(1, int(round(val_split * len(datalist)))))
        val = [datalist[i] for i in sorted(order[:n_val])]
        train = [datalist[i] for i in sorted(order[n_val:])]
        logger.info(f"Train volumes: {[d['id'] for d in train]}; validation: {[d['id'] for d in val]}")
        return train, val

    def load_transforms(self, context: Context, with_gt: bool) -> list:
        """Deterministic part (cached): load, convert to the convention, resample, normalise."""
        keys = ["image", "label"] + ([GT_KEY] if with_gt else [])
        modes = ["bilinear", "nearest"] + (["nearest"] if with_gt else [])
        return [
            LoadImaged(keys, image_only=True),
            EnsureChannelFirstd(keys),
            ScribbleMapd("label", self.convention, dense=self.dense_targets),
            Spacingd(keys, pixdim=context.request["target_spacing"], mode=modes),
            NormalizeIntensityd("image"),
            EnsureTyped(keys, dtype=[torch.float32] + [torch.int64] * (len(keys) - 1), track_meta=False),
        ]

    def train_pre_transforms(self, context: Context):
        patch = [int(p) for p in context.request["patch_size"]]
        pos = float(context.request.get("pos_fraction", 0.75))
        keys = ["image", "label"] + self.extra_batch_keys(context)
        return (
            self.load_transforms(context, with_gt=False)
            + self.recipe_transforms(context)
            + [
                AnnotatedMaskd("label", self.convention),
                SpatialPadd(keys + ["annotated"], spatial_size=patch),
                FgBgToIndicesd("annotated"),
                RandCropByPosNegLabeld(
                    keys,
                    label_key="annotated",
                    spatial_size=patch,
                    pos=pos,
                    neg=1.0 - pos,
                    num_samples=1,
                    fg_indices_key="annotated_fg_indices",
                    bg_indices_key="annotated_bg_indices",
                ),
                RandFlipd(keys, prob=0.5, spatial_axis=0),
                RandFlipd(keys, prob=0.5, spatial_axis=1),
                RandRotate90d(keys, prob=0.5, spatial_axes=(0, 1)),
                RandScaleIntensityd("image", factors=0.1, prob=0.5),
                RandShiftIntensityd("image", offsets=0.1, prob=0.5),
                SelectItemsd(keys),
            ]
        )

    def recipe_transforms(self, context: Context) -> list:
        """Deterministic per-volume steps of a recipe (cached with the volume), after loading."""
        return []

    def extra_batch_keys(self, context: Context) -> List[str]:
        """Per-voxel keys, besides image and label, that :meth:`recipe_transforms` add: they are
        padded, cropped and flipped with the image and reach :meth:`compute_loss` in the batch."""
        return []

    def train_post_transforms(self, context: Context):
        return None

    def val_pre_transforms(self, context: Context):
        with_gt = bool(context.val_datalist) and all(GT_KEY in d for d in context.val_datalist)
        keys = ["image", "label"] + ([GT_KEY] if with_gt else [])
        return self.load_transforms(context, with_gt) + [SelectItemsd(keys)]

    def val_post_transforms(self, context: Context):
        return None

    def train_data_loader(self, context: Context, num_workers=0, shuffle=True):
        dataset, datalist = self._dataset(context, context.train_datalist, is_train=True)
        dataset.transform.set_random_state(seed=int(context.request.get("seed", 0)) + context.local_rank)
        n = int(context.request["epoch_length"]) * int(context.train_batch_size)
        generator = torch.Generator().manual_seed(int(context.request.get("seed", 0)) + context.local_rank)
        sampler = RandomSampler(dataset, replacement=True, num_samples=n, generator=generator)
        logger.info(f"{context.local_rank} - {len(datalist)} training volumes, {n} patches per epoch")
        return ThreadDataLoader(dataset, batch_size=context.train_batch_size, sampler=sampler, num_workers=num_workers)

    # ---------------------------------------------------------------------------- network/opt
    def network(self, context: Context):
        """The architecture with initial weights drawn from the request's ``seed`` (checkpoints of
        ``pretrained`` or of a previous run are loaded over them by MONAI Label's loader)."""
        return seeded_copy(self._network, int(context.request.get("seed", 0)))

    def optimizer(self, context: Context):
        r = context.request
        return torch.optim.AdamW(
            context.network.parameters(), lr=float(r["learning_rate"]), weight_decay=float(r.get("weight_decay", 1e-4))
        )

    def lr_scheduler_handler(self, context: Context):
        """Polynomial decay (power 0.9) over the run's epochs."""
        scheduler = torch.optim.lr_scheduler.PolynomialLR(
            context.optimizer, total_iters=max(1, context.max_epochs), power=0.9
        )
        return LrScheduleHandler(scheduler, print_lr=False)

    def train_handlers(self, context: Context):
        """MONAI Label's handlers, with precise BatchNorm statistics computed before validation."""
        handlers = super().train_handlers(context)
        n = int(context.request.get("bn_recalibration_batches", 16))
        if n > 0:
            device = context.device

            def image_of(batch):
                x = batch["image"]
                return (x.as_tensor() if hasattr(x, "as_tensor") else x).to(device)

            handlers.insert(0, PreciseBatchNormHandler(n, image_of))
        return handlers

    def train_inferer(self, context: Context):
        return None

    def val_inferer(self, context: Context):
        return SegmentationInferer()

    # ---------------------------------------------------------------------------------- step
    def compute_loss(self, engine, outputs, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Loss terms of one batch; ``"loss"`` is optimised, the others are logged.

        Args:
            engine: the trainer (``engine.loss_function`` is :meth:`loss_function`'s module).
            outputs: the network's output (a tensor or a dict with ``"final"``).
            batch: the batch on the device: ``image`` (B, 1, H, W, D), ``label`` (B, 1, H, W, D)
                scribble map, plus the recipe's :meth:`extra_batch_keys`.
        """
        return {"loss": engine.loss_function(final_logits(outputs), batch["label"])}

    def train_iteration_update(self, context: Context):
        task = self

        def step(engine, batchdata):
            device = engine.state.device
            batch = {
                k: (v.as_tensor() if hasattr(v, "as_tensor") else v).to(device, non_blocking=True)
                for k, v in batchdata.items()
                if torch.is_tensor(v)
            }
            engine.state.output = {Keys.IMAGE: batch["image"], Keys.LABEL: batch["label"]}
            engine.network.train()
            engine.optimizer.zero_grad(set_to_none=True)
            amp = bool(engine.amp) and device.type == "cuda"
            with torch.autocast(device.type, enabled=amp):
                outputs = engine.network(batch["image"])
                engine.state.output[Keys.PRED] = final_logits(outputs).detach()
                engine.fire_event(IterationEvents.FORWARD_COMPLETED)
                terms = task.compute_loss(engine, outputs, batch)
            loss = terms["loss"]
            engine.state.output[Keys.LOSS] = loss
            engine.state.output.update({f"loss_{k}": v.detach() for k, v in terms.items() if k != "loss"})
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            if amp and engine.scaler is not None:
                engine.scaler.scale(loss).backward()
                engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
                engine.scaler.step(engine.optimizer)
                engine.scaler.update()
            else:
                loss.backward()
                engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
                engine.optimizer.step()
            engine.fire_event(IterationEvents.MODEL_COMPLETED)
            return engine.state.output

        return step

    def val_iteration_update(self, context: Context):
        def step(engine, batchdata):
            device = engine.state.device
            batch = {
                k: (v.as_tensor() if hasattr(v, "as_tensor") else v).to(device)
                for k, v in batchdata.items()
                if torch.is_tensor(v)
            }
            engine.network.eval()
            with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
                pred = engine.inferer(batch["image"], engine.network)
            engine.state.output = {Keys.IMAGE: batch["image"], Keys.LABEL: batch["label"], Keys.PRED: pred.float()}
            if GT_KEY in batch:
                engine.state.output[GT_KEY] = batch[GT_KEY]
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            return engine.state.output

        return step

    # ------------------------------------------------------------------------------- metrics
    def train_key_metric(self, context: Context):
        return {
            "train_scribble_dice": IgniteMetricHandler(
                DiceMetric(self.convention, scribbles=True), output_transform=from_engine([Keys.PRED, Keys.LABEL])
            )
        }

    def val_key_metric(self, context: Context):
        return {
            "val_scribble_dice": IgniteMetricHandler(
                DiceMetric(self.convention, scribbles=True), output_transform=from_engine([Keys.PRED, Keys.LABEL])
            )
        }

    def val_additional_metrics(self, context: Context):
        if context.val_datalist and all(GT_KEY in d for d in context.val_datalist):
            return {
                "val_dice": IgniteMetricHandler(
                    DiceMetric(self.convention, scribbles=False), output_transform=from_engine([Keys.PRED, GT_KEY])
                )
            }
        return None

    # ------------------------------------------------------------------------ run/publish
    def load_path(self, output_dir, pretrained=True):
        """MONAI Label's checkpoint to start from (the last run's, else ``pretrained``), unless the
        published model was trained for another label set: then fresh weights, whatever
        ``pretrained`` says (the heads' shapes differ; loading would fail mid-training)."""
        path = super().load_path(output_dir, pretrained)
        reason = (
            label_set_mismatch(meta_path(self._publish_path), self.convention.labels) if self._publish_path else None
        )
        if path and reason:
            logger.warning(f"the published model was {reason}: training starts from fresh weights")
            return None
        return path

    def train(self, rank, world_size, request, datalist):
        set_determinism(seed=int(request.get("seed", 0)))
        try:
            return super().train(rank, world_size, request, datalist)
        finally:
            set_determinism(seed=None)

    def finalize(self, context: Context):
        """MONAI Label's finalize with an atomic publisher (:mod:`lib.trainers.publish`) that also
        publishes the geometry sidecar; early stopping as in ``BasicTrainTask``."""
        if context.local_rank == 0:
            run_meta = os.path.join(context.output_dir, "meta.json")
            with open(run_meta, "w") as f:
                json.dump(
                    {
                        "target_spacing": context.request["target_spacing"],
                        "patch_size": context.request["patch_size"],
                        "labels": dict(self.convention.labels),
                        "background_scribble_id": self.convention.background_scribble_id,
                        "run_id": context.run_id,
                    },
                    f,
                    indent=1,
                )
            publisher = AtomicPublisher(
                self._stats_path,
                self._publish_path,
                self._key_metric_filename,
                context.start_ts,
                context.run_id,
                context.output_dir,
                context.trainer,
                context.evaluator,
                meta_file=run_meta,
                meta_publish_path=meta_path(self._publish_path) if self._publish_path else None,
                extra_stats=self._extra_stats,
            )
            (context.evaluator or context.trainer).add_event_handler(Events.EPOCH_COMPLETED, publisher)

        patience = int(context.request.get("early_stop_patience", 0))
        if patience > 0 and context.evaluator:
            metric = next(iter(self.val_key_metric(context)))
            context.evaluator.add_event_handler(
                Events.EPOCH_COMPLETED,
                EarlyStopping(
                    patience=patience, score_function=stopping_fn_from_metric(metric), trainer=context.trainer
                ),
            )

    def record_stats(self, key: str, value: Any) -> None:
        """Adds ``key`` to the published training stats (``GET /train/``, ``/info`` ``train_stats``)
        now and to every later publication of this request: a recipe that runs several trainings
        in one request (``can_em``'s recursions) keeps its figures visible while the next one
        publishes its epochs."""
        self._extra_stats[key] = value
        _add_to_stats_file(self._stats_path, key, value)


def _add_to_stats_file(stats_path: str, key: str, value: Any) -> None:
    """Adds ``key`` to a published stats file, atomically; nothing when none was published yet."""
    import tempfile

    if not os.path.exists(stats_path):
        return
    with open(stats_path) as f:
        stats = json.load(f)
    stats[key] = value
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(stats_path), suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(stats, f, indent=2)
    os.replace(tmp, stats_path)
