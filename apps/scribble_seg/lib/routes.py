"""Routes the app puts in place of MONAI Label's own when it starts serving (MONAI Label is not forked).

* ``POST /infer/{model}``: MONAI Label's endpoint is ``async def`` and runs the inference on the
  event loop, so every other request -- an annotator's Next Sample, Submit Label, ``/info`` --
  waits behind another annotator's inference. Ours runs the same function
  (``monailabel.endpoints.infer.run_inference``) on one worker thread, :data:`INFER_THREAD`; the
  app still runs one inference at a time (:meth:`ScribbleSegApp.infer`). Conf ``infer_in_worker``
  (default ``true``; ``false`` keeps MONAI Label's endpoint).
* ``POST /train/{model}`` and ``POST /train/``: the parameters are checked by the recipe
  (:meth:`lib.trainers.base.ScribbleTrainTask.check_request`: names, types, ranges, patch size
  against the network's stride) before MONAI Label starts the training subprocess, and a 429 says
  which training runs and how to stop it.

Each route keeps MONAI Label's path, parameters and role check; :func:`install` swaps the
endpoint in the router's list in place, so route order (and thus matching) is unchanged.
"""

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from fastapi import BackgroundTasks, Depends, File, Form, HTTPException, UploadFile
from fastapi.routing import APIRoute
from monailabel.config import settings
from monailabel.endpoints import train as train_endpoints
from monailabel.endpoints.infer import ResultType, run_inference
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance
from monailabel.utils.async_tasks.task import AsyncTask
from starlette.concurrency import run_in_threadpool

from lib.errors import RequestError

logger = logging.getLogger(__name__)


INFER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
"""The one thread every inference runs on: the app runs one inference at a time anyway, and
PyTorch keeps its CPU thread team per calling thread, so inferences spread over Starlette's pool
of threads run slower under a mixed load than on one thread."""


async def run_inference_in_worker(
    background_tasks: BackgroundTasks,
    model: str,
    image: str = "",
    session_id: str = "",
    params: str = Form("{}"),
    file: UploadFile = File(None),
    label: UploadFile = File(None),
    output: Optional[ResultType] = None,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
):
    """MONAI Label's inference endpoint, run off the event loop on :data:`INFER_THREAD`."""
    call = functools.partial(run_inference, background_tasks, model, image, session_id, params, file, label, output)
    return await asyncio.get_running_loop().run_in_executor(INFER_THREAD, call)


def running_training_message() -> str:
    """The 429 of a second training: which one runs, since when, and how to stop it."""
    task, _ = AsyncTask.status("train", check_if_running=True)
    what = "a training is already running"
    if task:
        request = task.get("request") or {}
        run = f" (run {request['name']!r})" if request.get("name") else ""
        what = f"training {request.get('model', '?')!r}{run} is already running since {task.get('start_ts', '?')}"
    return (
        f"{what}: wait for it (GET /train/ shows its progress) or stop it (DELETE /train/; "
        f"3D Slicer: Stop Training), or send enqueue=true to run this one after it"
    )


def checked_training(model: str, params: Optional[dict]) -> Optional[dict]:
    """``params`` converted by the recipe's check; 404 for a model that has no trainer."""
    instance = app_instance()
    trainers = instance._trainers  # MONAI Label keeps them there; the app built them
    if model not in trainers:
        raise RequestError(f"unknown model {model!r}; trainers: {sorted(trainers)}", 404)
    check = getattr(trainers[model], "check_request", None)
    return check(model, params) if check and params is not None else params


def _with_busy_message(start: Callable[[], dict]) -> dict:
    try:
        return start()
    except HTTPException as e:
        if e.status_code == 429:
            raise RequestError(running_training_message(), 429) from None
        raise


async def train_model(
    model: str,
    params: Optional[dict] = None,
    run_sync: Optional[bool] = False,
    enqueue: Optional[bool] = False,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)),
):
    """``POST /train/{model}`` with the parameters checked first."""
    checked = checked_training(model, params)
    return await run_in_threadpool(
        _with_busy_message, lambda: train_endpoints.run_model(model, checked, run_sync, enqueue)
    )


async def train_all(
    params: Optional[dict] = None,
    run_sync: Optional[bool] = False,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)),
):
    """``POST /train/`` (OHIF's Update Model, no model named): the one recipe the app retrains
    (:meth:`ScribbleSegApp.update_model_recipe`, conf ``al_recipe``) -- MONAI Label's endpoint trains
    every trainer one after the other, seven recipes here. ``params[recipe]`` (checked) overrides the
    retraining parameters (conf ``al_retrain_params``)."""
    instance = app_instance()
    recipe = instance.update_model_recipe()
    if not recipe or recipe not in instance._trainers:
        raise RequestError(f"no recipe to train: set conf al_recipe to one of {sorted(instance._trainers)}")
    unknown = sorted(set(params or {}) - set(instance._trainers))
    if unknown:
        raise RequestError(f"params for {unknown}, which are no trainers; trainers: {sorted(instance._trainers)}")
    value = (params or {}).get(recipe, instance.retrain_params())
    checked = checked_training(recipe, value or None)
    result = await run_in_threadpool(
        _with_busy_message, lambda: train_endpoints.run_model(recipe, checked, run_sync, False)
    )
    return {recipe: result}


REPLACEMENTS = {
    ("/infer/{model}", "POST"): run_inference_in_worker,
    ("/train/{model}", "POST"): train_model,
    ("/train/", "POST"): train_all,
}


def _swap(routes: list, prefix: str, replacements) -> int:
    """Replaces, in place, the routes of ``routes`` that ``replacements`` names."""
    swapped = 0
    for i, route in enumerate(routes):
        if not isinstance(route, APIRoute):
            continue
        path = route.path[len(prefix) :] if prefix and route.path.startswith(prefix) else route.path
        for method in route.methods:
            endpoint = replacements.get((path, method))
            if endpoint is not None:
                routes[i] = APIRoute(
                    route.path,
                    endpoint,
                    methods=[method],
                    summary=route.summary,
                    tags=route.tags,
                    responses=route.responses,
                    include_in_schema=route.include_in_schema,
                    deprecated=route.deprecated,
                )
                swapped += 1
    return swapped


def install(app, infer_in_worker: bool = True) -> int:
    """Swaps :data:`REPLACEMENTS` into a FastAPI ``app``; returns how many routes were swapped.
    ``infer_in_worker=False`` keeps MONAI Label's inference endpoint (conf ``infer_in_worker false``).

    Older FastAPI copies an included router's routes into the app's list; newer FastAPI keeps a
    reference to the included router and reads its routes when it matches a request (re-read
    after ``_mark_routes_changed``). Both lists are swapped, so either version serves ours.
    """
    from monailabel.endpoints import infer as infer_endpoints

    replacements = {k: v for k, v in REPLACEMENTS.items() if infer_in_worker or not k[0].startswith("/infer")}
    swapped = _swap(app.router.routes, settings.MONAI_LABEL_API_STR, replacements)
    for router in (infer_endpoints.router, train_endpoints.router):
        n = _swap(router.routes, "", replacements)
        if n and hasattr(router, "_mark_routes_changed"):
            router._mark_routes_changed()
        swapped += n
    logger.info(f"{swapped} MONAI Label routes run through the app (inference off the event loop, checked training)")
    return swapped
