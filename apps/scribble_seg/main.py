"""scribble_seg: a MONAI Label app that trains segmentation networks from scribbles.

Serve it (see the README for the one-line version)::

    monailabel start_server --app apps/scribble_seg --studies <folder> --host 127.0.0.1 \\
        --conf models all --conf labels '{"lv": 1, "myocardium": 2, "rv": 3}'

Conf options (``--conf key value``; every value is a string):

=========================  ================================================================================
``models``                 comma-separated config names of ``lib/configs`` or ``all`` (default ``all``: every
                           config but the benchmark-only ones, e.g. ``full``, which must be named)
``labels``                 JSON ``{"name": id}`` with ids 1..K, or comma-separated names (default: the sample
                           phantoms' ``{"lv": 1, "myocardium": 2, "rv": 3}``)
``background_scribble_id`` value of a background stroke in scribble maps (default ``len(labels) + 1``)
``scribble_tag``           datastore tag that holds the scribbles used for training (default ``final``)
``scribble_label_info``    ``required`` (default): scribbles must name their values in ``label_info``, as Slicer
                           and OHIF send them; ``optional``: bare maps in the convention below are accepted too
``device``                 ``cpu``, ``cuda`` or ``cuda:N`` (default ``cuda`` when available, else ``cpu``)
``refinement``             ``false`` hides the ``crf`` / ``random_walk`` scribble refinement tasks (default on)
``target_spacing``         training/inference spacing in mm, JSON list, or ``auto`` (median of the training
                           volumes, recorded next to the published model; default)
``patch_size``             training patch, JSON list (default ``[96, 96, 16]``)
``dropout``                dropout of the networks (default 0.1; MC dropout needs it > 0)
``largest_component``      ``true``: segmentations keep one connected component per structure (default;
                           ``scribble2d5``, ``exmod`` and ``zscribbleseg``: ``myocardium`` where the labels have it)
                           (``object``: the largest foreground object first; a structure name, e.g.
                           ``myocardium``: that structure's largest component and, of every other, the
                           component bordering it most; ``false``: off). Also an infer request parameter
``gt_tag``                 datastore tag of dense ground truth, used for validation metrics only (default ``gt``)
``max_upload_mb``          largest image or label accepted by the datastore (default 1024; larger: HTTP 413)
``points_tag``             datastore tag of Weak-Net surface points (default ``points``; checked at upload)
``al_model``               model whose MC-dropout uncertainty drives ``next_to_scribble`` (default ``scribble2d5``)
``al_passes``, ``al_metric``   dropout passes (6) and ``mutual_information`` (default) or ``entropy``
``al_margin_mm``           context around the predicted foreground's box that the dropout passes run on (16)
``al_bfloat16``            scoring under bfloat16 autocast: ``auto`` (default: where the device computes it
                           natively), ``true`` or ``false``
``al_exclusion_minutes``   a volume served to any client this recently is not served again (default 10)
``al_diversity``           weight of the similarity-to-scribbled-volumes discount (default 0.5; 0 = off)
``al_retrain_after``       new scribble maps that start a training of ``al_recipe`` (default 5; 0 = never)
``al_recipe``              recipe retrained by that trigger (default: ``al_model``)
``al_retrain_params``      JSON train-request parameters of that training, e.g. ``{"max_epochs": 5}``
``infer_in_worker``        ``true`` (default): inference runs on one worker thread, so Next Sample, Submit Label
                           and ``/info`` answer while it runs (one inference at a time still); ``false``: on the
                           server's event loop, as MONAI Label's endpoint does, where every request waits for it
``background_niceness``    priority drop (0..19) of training and scoring subprocesses, so that refinement
                           requests keep their speed while a training runs (default 10; 0 = off)
=========================  ================================================================================

Recipe-specific keys (``scribble2d5_*``, ``can_em_*``) are documented in their ``lib/configs/<recipe>.py``.
The label convention is :mod:`lib.scribbles.convention`; ``/info`` reports it under ``scribbles``.
"""

import importlib
import json
import logging
import os
import threading
from typing import Dict, Optional

import torch
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.utils.others.class_utils import get_class_names

import lib.configs
from lib.activelearning import EpistemicScoring, NextToScribble, Random
from lib.background import DEFAULT_NICENESS, yield_to_server
from lib.configs.recipe import conf_flag
from lib.datastore import ScribbleDatastore, scribble_tag
from lib.errors import RequestError
from lib.infers import ScribbleRefinement, ScribbleSegmentation
from lib.infers.parameters import check_infer_request
from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.refine import METHODS as REFINEMENT_METHODS

logger = logging.getLogger(__name__)

__version__ = "0.1.0"
DEFAULT_MAX_UPLOAD_MB = 1024.0


def available_configs() -> Dict[str, type]:
    """``{model name: TaskConfig class}`` of every config in ``lib/configs`` (name = file name)."""
    configs = {}
    for path in get_class_names(lib.configs, "TaskConfig"):
        module, _, cls_name = path.rpartition(".")
        configs[path.split(".")[-2].lower()] = getattr(importlib.import_module(module), cls_name)
    return dict(sorted(configs.items()))


def select_models(requested: str, configs: Dict[str, type]) -> Dict[str, type]:
    """The configs named by the ``models`` conf; ``all`` = every one not marked ``benchmark_only``."""
    names = [m.strip() for m in (requested or "all").split(",") if m.strip()]
    unknown = [m for m in names if m != "all" and m not in configs]
    if unknown:
        raise ValueError(
            f"unknown model(s) {unknown} in conf 'models'; available: all, {', '.join(configs) or '(none)'}"
        )
    return {
        k: v for k, v in configs.items() if k in names or ("all" in names and not getattr(v, "benchmark_only", False))
    }


def resolve_device(name: str) -> str:
    """The ``device`` conf as a torch device string; ``cuda`` falls back to ``cpu`` without a GPU."""
    name = (name or ("cuda" if torch.cuda.is_available() else "cpu")).strip().lower()
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"conf 'device' must be cpu, cuda or cuda:N, got {name!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning(f"conf device {name!r} asked for, but CUDA is not available: using cpu")
        return "cpu"
    return str(device)


def label_info_required(value: str) -> bool:
    """Conf ``scribble_label_info``: ``required`` or ``optional``."""
    value = (value or "required").strip().lower()
    if value not in ("required", "optional"):
        raise ValueError(f"conf scribble_label_info must be 'required' or 'optional', got {value!r}")
    return value == "required"


class ScribbleSegApp(MONAILabelApp):
    """Trains segmentation networks from scribbles, refines segmentations from new scribbles and
    tells annotators which volume to scribble next."""

    def __init__(self, app_dir, studies, conf):
        niceness = str(conf.get("background_niceness", DEFAULT_NICENESS)).strip()
        yield_to_server(int(niceness) if niceness.lstrip("-").isdigit() else niceness)
        self.model_dir = os.path.join(app_dir, "model")
        os.makedirs(self.model_dir, exist_ok=True)  # start_server makes it; in-process use (benchmarks) too
        self.convention = ScribbleConvention.from_conf(conf)
        self.scribble_tag = scribble_tag(conf)
        self.device = resolve_device(conf.get("device", ""))

        self.models: Dict[str, TaskConfig] = {}
        for name, cls in select_models(conf.get("models", "all"), available_configs()).items():
            logger.info(f"+++ Adding Model: {name} => {cls.__module__}.{cls.__name__}")
            config = cls()
            config.init(name, self.model_dir, conf, None, convention=self.convention, device=self.device)
            self.models[name] = config
        logger.info(f"+++ Using Models: {list(self.models)}; labels {self.convention.labels}; device {self.device}")

        # one inference at a time: the routes run them in worker threads (lib.routes), and
        # concurrent inferences only compete for the same cores (torch's OpenMP workers spin while
        # a numpy refinement waits for them), so together they finish later than one after another
        self._infer_lock = threading.Lock()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="scribble_seg",
            description="Segmentation networks trained from scribbles, scribble refinement, active learning",
            version=__version__,
            labels=dict(self.convention.labels),
        )
        self._retrain_params = self._checked_retrain_params()

    def _checked_retrain_params(self) -> Dict:
        """Conf ``al_retrain_params`` checked by the retrained recipe at start-up (the trigger hands
        it to MONAI Label directly, past the checked route): a bad value stops the server here."""
        text = self.conf.get("al_retrain_params") or "{}"
        try:
            params = json.loads(text)
        except ValueError:
            raise ValueError(f"conf al_retrain_params must be a JSON object, got {text!r}") from None
        recipe = self.conf.get("al_recipe") or self._al_model()
        trainer = self._trainers.get(recipe) if recipe else None
        if trainer is None or not hasattr(trainer, "check_request"):
            return params
        try:
            return trainer.check_request(recipe, params)
        except RequestError as e:
            raise ValueError(f"conf al_retrain_params: {e.detail}") from None

    def init_infers(self) -> Dict[str, InferTask]:
        infers: Dict[str, InferTask] = {}
        for name, config in self.models.items():
            task = config.infer()
            for k, v in (task if isinstance(task, dict) else {name: task}).items():
                logger.info(f"+++ Adding Inferer:: {k} => {v}")
                infers[k] = v
        if self.conf.get("refinement", "true").strip().lower() != "false":
            segmentation = {k: v for k, v in infers.items() if isinstance(v, ScribbleSegmentation)}
            for method in REFINEMENT_METHODS:
                infers[method] = ScribbleRefinement(method, self.convention, segmentation, device=self.device)
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        trainers: Dict[str, TrainTask] = {}
        for name, config in self.models.items():
            task = config.trainer()
            if task:
                logger.info(f"+++ Adding Trainer:: {name} => {task}")
                trainers[name] = task
        return trainers

    def _al_model(self) -> Optional[str]:
        """The model whose uncertainty drives active learning (conf ``al_model``)."""
        segmentation = [k for k, v in self._infers.items() if isinstance(v, ScribbleSegmentation)]
        name = self.conf.get("al_model") or (
            "scribble2d5" if "scribble2d5" in segmentation else (segmentation[0] if segmentation else None)
        )
        if name is not None and name not in segmentation:
            raise ValueError(f"conf al_model {name!r} is not a segmentation model; available: {segmentation}")
        return name

    def init_strategies(self) -> Dict[str, Strategy]:
        model = self._al_model()
        strategies: Dict[str, Strategy] = {
            "next_to_scribble": NextToScribble(
                self._infers.get(model),
                self.scribble_tag,
                exclusion_minutes=float(self.conf.get("al_exclusion_minutes", 10)),
                diversity=float(self.conf.get("al_diversity", 0.5)),
            ),
            "random": Random(),
            "first": First(),
        }
        for name, config in self.models.items():
            s = config.strategy()
            strategies.update(s if isinstance(s, dict) else ({name: s} if s else {}))
        return strategies

    def init_scoring_methods(self) -> Dict[str, ScoringMethod]:
        methods: Dict[str, ScoringMethod] = {}
        model = self._al_model()
        if model:
            methods["next_to_scribble"] = EpistemicScoring(
                self._infers[model],
                self.scribble_tag,
                passes=self.conf.get("al_passes", 6),
                metric=self.conf.get("al_metric", "mutual_information"),
                margin_mm=self.conf.get("al_margin_mm", 16.0),
                bfloat16=self.conf.get("al_bfloat16", "auto"),
                device=self.device,
            )
        for name, config in self.models.items():
            s = config.scoring_method()
            methods.update(s if isinstance(s, dict) else ({name: s} if s else {}))
        return methods

    def info(self):
        meta = super().info()
        meta["scribbles"] = {**self.convention.describe(), "tag": self.scribble_tag}
        return meta

    def init_datastore(self) -> Datastore:
        """Local studies get the guarded datastore (bad writes refused with a 4xx, nothing stored)."""
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        return ScribbleDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            convention=self.convention,
            scribble_tag=self.scribble_tag,
            max_upload_mb=float(self.conf.get("max_upload_mb", DEFAULT_MAX_UPLOAD_MB)),
            points_tag=self.conf.get("points_tag", "points"),
            label_info_required=label_info_required(self.conf.get("scribble_label_info", "required")),
        )

    def server_mode(self, mode: bool):
        """MONAI Label calls this once the server starts: our routes go in front of its own
        (:mod:`lib.routes`: inference off the event loop, training parameters checked)."""
        super().server_mode(mode)
        if mode:
            from monailabel.app import app

            from lib.routes import install

            install(app, infer_in_worker=conf_flag(self.conf, "infer_in_worker", True))

    # -- requests naming something that does not exist: 404 with the alternatives, not a bare 500
    def infer(self, request, datastore=None):
        model = request.get("model")
        if model not in self._infers:
            raise RequestError(f"unknown model {model!r}; available: {sorted(self._infers)}", 404)
        image = request.get("image")
        if image and not os.path.exists(image) and not request.get("session_id"):
            if not (datastore or self.datastore()).get_image_uri(image):
                raise RequestError(f"image {image!r} is not in the datastore", 404)
        check_infer_request(request, max(self.convention.labels.values()))
        with self._infer_lock:
            return super().infer(request, datastore)

    def next_sample(self, request):
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise RequestError(f"unknown strategy {strategy!r}; available: {sorted(self._strategies)}", 404)
        return super().next_sample(request)

    def on_save_label(self, image_id, label_id):
        """Count scribble submissions; after ``al_retrain_after`` of them start the active-learning
        model's training (if none runs). The reply to ``PUT /datastore/label`` says what happened."""
        every = int(self.conf.get("al_retrain_after", 5))
        datastore = self.datastore()
        pending = getattr(datastore, "scribble_saves", 0)
        recipe = self.conf.get("al_recipe") or self._al_model()
        if every <= 0 or not recipe or recipe not in self._trainers or pending < every:
            return {"retraining": {"pending_scribbles": pending, "starts_after": every, "recipe": recipe}}
        params = self._retrain_params
        started = self.async_training(recipe, params={recipe: params} if params else None)
        if started:
            datastore.scribble_saves = 0
            logger.info(f"{pending} new scribble maps: training '{recipe}' started")
            return {"retraining": {"started": recipe, "after_scribbles": pending}}
        return {
            "retraining": {
                "pending_scribbles": pending,
                "starts_after": every,
                "recipe": recipe,
                "note": "a training is already running; it starts after the next submission",
            }
        }

    def train(self, request):
        """MONAI Label's train, then a refresh of the active-learning scores for the new weights
        (MONAI Label's own when ``MONAI_LABEL_AUTO_UPDATE_SCORING`` is on, else ours)."""
        result = super().train(request)
        # only as the server or its training subprocess (which inherits MONAI_LABEL_SERVER_PORT): an
        # in-process app would otherwise POST to whatever listens on the default port
        # MONAI Label's own train() already refreshes every scoring method when auto-update is on
        # (the default); a second request then meets the running one and logs "Failed To Trigger"
        served = self._server_mode or "MONAI_LABEL_SERVER_PORT" in os.environ
        if (
            served
            and not self._auto_update_scoring
            and "next_to_scribble" in self._scoring_methods
            and request.get("model") == self._al_model()
        ):
            try:
                self.async_scoring("next_to_scribble")
            except Exception as e:  # the server went away: scores refresh on its next start
                logger.warning(f"could not start the score refresh: {e}")
        return result

    def bundle_path(self, model):
        """Asked by MONAI Label before it queues a training: refuse unknown models right away."""
        if model is not None and model not in self._trainers and model not in self._infers:
            raise RequestError(f"unknown model {model!r}; trainers: {sorted(self._trainers)}", 404)
        return super().bundle_path(model)
