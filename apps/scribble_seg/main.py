"""scribble_seg: a MONAI Label app that trains segmentation networks from scribbles.

Serve it (see the README for the one-line version)::

    python -m monailabel.main start_server --app apps/scribble_seg --studies <folder> --host 127.0.0.1 \\
        --conf models all --conf labels '{"liver": 1, "spleen": 2}'

Conf options (``--conf key value``): every key, its default and its meaning are declared in
:mod:`lib.conf` (the README's table is printed from it: ``python -m lib.conf`` in the app folder).
The label convention is :mod:`lib.scribbles.convention`; ``/info`` reports it under ``scribbles``.
"""

import importlib
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
from lib.activelearning.next_to_scribble import SERVED_KEY
from lib.background import is_background_task, yield_to_server
from lib.conf import (
    conf_choice,
    conf_flag,
    conf_float,
    conf_int,
    conf_json,
    conf_text,
    unknown_keys,
    with_dataset_conf,
)
from lib.datastore import ScribbleDatastore, scribble_tag
from lib.errors import RequestError
from lib.infers import ClickRefinement, ScribbleRefinement, ScribbleSegmentation
from lib.infers.parameters import check_infer_request
from lib.infers.refine import LOADED
from lib.infers.warmup import warm_result_writer
from lib.scribbles.convention import ScribbleConvention
from lib.scribbles.refine import METHODS as REFINEMENT_METHODS

logger = logging.getLogger(__name__)

CLICKS = "scribble_clicks"
"""The point-prompt model OHIF lists (type ``deepedit``)."""

__version__ = "0.1.0"


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


class ScribbleSegApp(MONAILabelApp):
    """Trains segmentation networks from scribbles, refines segmentations from new scribbles and
    tells annotators which volume to scribble next."""

    def __init__(self, app_dir, studies, conf):
        # the dataset's own labels and anatomy, under --conf
        conf = with_dataset_conf(conf, studies, conf_text(conf, "dataset_conf"))
        unknown = unknown_keys(conf)
        if unknown:
            logger.warning(f"conf key(s) {unknown} are not read by this app (see lib/conf.py for the keys)")
        yield_to_server(conf_int(conf, "background_niceness", minimum=0, maximum=19))
        self.model_dir = os.path.join(app_dir, "model")
        os.makedirs(self.model_dir, exist_ok=True)  # start_server makes it; in-process use (benchmarks) too
        self.convention = ScribbleConvention.from_conf(conf)
        self.scribble_tag = scribble_tag(conf)
        self.device = resolve_device(conf_text(conf, "device"))

        self.models: Dict[str, TaskConfig] = {}
        for name, cls in select_models(conf_text(conf, "models"), available_configs()).items():
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
            # names in id order, as MONAI Label lists them itself (OHIF's panel appends to this list and
            # stops connecting on a dict); ids and the background stroke are under /info "scribbles"
            labels=list(self.convention.labels),
        )
        self._retrain_params = self._checked_retrain_params()
        if not is_background_task():  # training and scoring subprocesses rebuild the app but answer no stroke
            warm_result_writer()  # the first inference's result does not wait for ITK's modules

    def _checked_retrain_params(self) -> Dict:
        """Conf ``al_retrain_params`` checked by the retrained recipe at start-up (the trigger hands
        it to MONAI Label directly, past the checked route): a bad value stops the server here."""
        params = conf_json(self.conf, "al_retrain_params")
        if not isinstance(params, dict):
            text = conf_text(self.conf, "al_retrain_params")
            raise ValueError(f"conf al_retrain_params must be a JSON object, got {text!r}")
        recipe = self.update_model_recipe()
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
        if conf_flag(self.conf, "refinement"):
            segmentation = {k: v for k, v in infers.items() if isinstance(v, ScribbleSegmentation)}
            for method in REFINEMENT_METHODS:
                infers[method] = ScribbleRefinement(method, self.convention, segmentation, device=self.device)
            # OHIF's Point Prompts: clicks stored as scribbles, then refined (lib/infers/clicks.py)
            infers[CLICKS] = ClickRefinement(
                conf_choice(self.conf, "click_method", tuple(REFINEMENT_METHODS)),
                self.convention,
                segmentation,
                self.datastore,
                scribble_tag=self.scribble_tag,
                radius_mm=conf_float(self.conf, "click_radius_mm", minimum=0),
                prior_model=self.update_model_recipe(infers) or "",
                device=self.device,
            )
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        trainers: Dict[str, TrainTask] = {}
        for name, config in self.models.items():
            task = config.trainer()
            if task:
                logger.info(f"+++ Adding Trainer:: {name} => {task}")
                trainers[name] = task
        return trainers

    def _al_model(self, infers: Optional[Dict[str, InferTask]] = None) -> Optional[str]:
        """The model whose uncertainty drives active learning (conf ``al_model``)."""
        infers = self._infers if infers is None else infers
        segmentation = [k for k, v in infers.items() if isinstance(v, ScribbleSegmentation)]
        name = conf_text(self.conf, "al_model") or (
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
                exclusion_minutes=conf_float(self.conf, "al_exclusion_minutes", minimum=0),
                diversity=conf_float(self.conf, "al_diversity", minimum=0),
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
                passes=conf_int(self.conf, "al_passes", minimum=2),
                metric=conf_choice(self.conf, "al_metric", ("mutual_information", "entropy")),
                margin_mm=conf_float(self.conf, "al_margin_mm", minimum=0),
                bfloat16=conf_choice(self.conf, "al_bfloat16", ("auto", "true", "false")),
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
        """The guarded datastore (bad writes refused with a 4xx, nothing stored): over the local studies
        folder, or over a DICOMweb server when ``--studies`` is its URL (:mod:`lib.dicomweb`)."""
        guards = dict(
            convention=self.convention,
            scribble_tag=self.scribble_tag,
            max_upload_mb=conf_float(self.conf, "max_upload_mb", minimum=0),
            points_tag=conf_text(self.conf, "points_tag"),
            label_info_required=conf_choice(self.conf, "scribble_label_info", ("required", "optional")) == "required",
        )
        if self.studies.startswith(("http://", "https://")):
            from lib.dicomweb import ScribbleDICOMwebDatastore, dicomweb_client, require_dcmqi

            self.studies = self.studies.rstrip("/").strip()
            require_dcmqi()
            modalities = conf_json(self.conf, "dicomweb_modalities")
            if not isinstance(modalities, list) or not modalities or not all(isinstance(m, str) for m in modalities):
                raise ValueError(f'conf dicomweb_modalities: a list, e.g. ["CT", "MR"]; got {modalities!r}')
            cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
            return ScribbleDICOMwebDatastore(
                dicomweb_client(self.studies),
                modalities=modalities,
                listing_s=conf_float(self.conf, "dicomweb_listing_s", minimum=0),
                shared_keys=(SERVED_KEY,),  # Next Sample's exclusion window, across app servers
                cache_path=cache,
                **guards,
            )
        return ScribbleDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            **guards,
        )

    def server_mode(self, mode: bool):
        """MONAI Label calls this once the server starts: our routes go in front of its own
        (:mod:`lib.routes`: inference off the event loop, training parameters checked)."""
        super().server_mode(mode)
        if mode:
            from monailabel.app import app

            from lib.routes import install

            install(app, infer_in_worker=conf_flag(self.conf, "infer_in_worker"))

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
        if isinstance(self._infers[model], ClickRefinement) and image and not os.path.exists(image):
            request["image_id"] = image  # its clicks are stored with the image's scribbles
        with self._infer_lock:
            return super().infer(request, datastore)

    def next_sample(self, request):
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise RequestError(f"unknown strategy {strategy!r}; available: {sorted(self._strategies)}", 404)
        reply = super().next_sample(request)
        path = (reply or {}).get("path")
        refining = any(isinstance(t, ScribbleRefinement) for t in self._infers.values())
        if refining and isinstance(path, str) and os.path.isfile(path):
            LOADED.preload(path)  # the annotator's first stroke on it will not wait for the read
        return reply

    def on_save_label(self, image_id, label_id):
        """Count scribble submissions; after ``al_retrain_after`` of them start the active-learning
        model's training (if none runs). The reply to ``PUT /datastore/label`` says what happened."""
        every = conf_int(self.conf, "al_retrain_after", minimum=0)
        datastore = self.datastore()
        pending = getattr(datastore, "scribble_saves", 0)
        recipe = self.update_model_recipe()
        if every <= 0 or not recipe or recipe not in self._trainers or pending < every:
            return {"retraining": {"pending_scribbles": pending, "starts_after": every, "recipe": recipe}}
        params = self.retrain_params()
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

    def retrain_params(self) -> Dict:
        """The training parameters of a retraining (conf ``al_retrain_params``, checked at start-up)."""
        return dict(self._retrain_params or {})

    def update_model_recipe(self, infers: Optional[Dict[str, InferTask]] = None) -> Optional[str]:
        """The recipe that the retraining trigger and ``POST /train/`` (OHIF's Update Model, no model
        named) train: conf ``al_recipe``, else the active-learning model."""
        return conf_text(self.conf, "al_recipe") or self._al_model(infers)

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
