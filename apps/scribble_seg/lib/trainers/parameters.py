"""Training request parameters: what each one accepts, checked before a training starts.

MONAI Label hands the body of ``POST /train/<model>`` to a training subprocess as it came: a
misspelt key (``epochs``) is ignored and a bad value (``max_epochs: "many"``) fails minutes later,
visible only in ``GET /train/``. :func:`check_parameters` refuses both at the request, with a 422
(:class:`lib.errors.RequestError`) that names the parameter and what to send, and returns the
values converted to their types (a number typed as text in Slicer's options table, ``"5"``, is
read as 5; ``"5.5"`` or ``"many"`` for a count is refused).

A parameter is a parser ``value -> value`` that raises ``ValueError`` with "what to send";
:data:`TRAINING_PARAMETERS` holds the ones every recipe reads (ours and MONAI Label's
``BasicTrainTask``'s); a recipe adds its own through ``ScribbleTrainTask.parameters``.
"""

import json
import os
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from lib.errors import RequestError

Parser = Callable[[Any], Any]

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A run name is a folder under ``model/<recipe>/``: a plain name, no path."""


def _as_json(value: Any) -> Any:
    """Lists and booleans typed as text (Slicer's options table sends what the user typed)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def integer(low: int, high: Optional[int] = None) -> Parser:
    """A whole number in ``[low, high]``."""
    what = f"a whole number, at least {low}" + (f" and at most {high}" if high is not None else "")

    def parse(value):
        value = _as_json(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            raise ValueError(what)
        return value

    return parse


def number(low: float, high: Optional[float] = None, low_open: bool = False, high_open: bool = False) -> Parser:
    """A number between ``low`` and ``high``, either bound open or closed."""
    what = f"a number {'above' if low_open else 'at least'} {low:g}"
    if high is not None:
        what += f" and {'below' if high_open else 'at most'} {high:g}"

    def parse(value):
        value = _as_json(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(what)
        value = float(value)
        if not (value > low if low_open else value >= low):
            raise ValueError(what)
        if high is not None and not (value < high if high_open else value <= high):
            raise ValueError(what)
        return value

    return parse


def boolean() -> Parser:
    """``true`` or ``false`` (JSON booleans, or the words)."""

    def parse(value):
        value = _as_json(value)
        if not isinstance(value, bool):
            raise ValueError("true or false")
        return value

    return parse


def text(pattern: Optional[str] = None, what: str = "text") -> Parser:
    """A string, matching ``pattern`` when one is given."""
    compiled = re.compile(pattern) if pattern else None

    def parse(value):
        if not isinstance(value, str) or (compiled is not None and not compiled.match(value)):
            raise ValueError(what)
        return value

    return parse


def choice(options: Sequence[str]) -> Parser:
    """One of ``options``; a list (what ``/info`` shows for a choice, first = default) means its
    first entry, as MONAI Label reads it."""
    what = "one of " + ", ".join(repr(o) for o in options)

    def parse(value):
        if isinstance(value, (list, tuple)) and value:
            value = value[0]
        if value not in options:
            raise ValueError(what)
        return value

    return parse


def size3() -> Parser:
    """Three whole numbers >= 1 (voxels), a list or its JSON text."""
    what = "three whole numbers of voxels, e.g. [96, 96, 16]"

    def parse(value):
        value = _as_json(value)
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
        ):
            raise ValueError(what)
        return [int(v) for v in value]

    return parse


def spacing() -> Parser:
    """``"auto"`` or three positive numbers (mm)."""
    what = "'auto' or three positive numbers in mm, e.g. [1.5, 1.5, 3]"

    def parse(value):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        value = _as_json(value)
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in value)
        ):
            raise ValueError(what)
        return [float(v) for v in value]

    return parse


def directory() -> Parser:
    """A folder that exists on the server."""

    def parse(value):
        if not isinstance(value, str) or not os.path.isdir(value):
            raise ValueError("a folder that exists on the server")
        return value

    return parse


TRAINING_PARAMETERS: Dict[str, Parser] = {
    # the run
    "name": text(RUN_NAME.pattern, "a plain run name (letters, digits, '.', '_', '-'; no path)"),
    "pretrained": boolean(),
    "device": text(r"^(cpu|cuda(:\d+)?)$", "'cpu', 'cuda' or 'cuda:N'"),
    "seed": integer(0),
    "multi_gpu": boolean(),
    "gpus": text(r"^(all|\d+(,\d+)*)$", "'all' or GPU numbers such as '0,1'"),
    # budget and optimiser
    "max_epochs": integer(1),
    "epoch_length": integer(1),
    "train_batch_size": integer(1),
    "val_batch_size": integer(1),
    "learning_rate": number(0.0, 1.0, low_open=True),
    "weight_decay": number(0.0),
    "early_stop_patience": integer(-1),
    "bn_recalibration_batches": integer(0),
    # data
    "val_split": number(0.0, 1.0, high_open=True),
    "pos_fraction": number(0.0, 1.0),
    "patch_size": size3(),
    "target_spacing": spacing(),
    "gt_dir": directory(),
    "dataset": choice(["SmartCacheDataset", "CacheDataset", "PersistentDataset", "Dataset"]),
    "dataloader": choice(["ThreadDataLoader", "DataLoader"]),
    "train_ds": text(what="a datalist file on the server"),
    "val_ds": text(what="a datalist file on the server"),
    # MONAI Label's experiment tracking
    "tracking": choice(["None", "mlflow"]),
    "tracking_uri": text(),
    "tracking_experiment_name": text(),
    "tracking_run_name": text(),
}

IGNORED_KEYS = ("model", "client_id")
"""Keys MONAI Label itself puts in a request (the route's model name; its client's id)."""


def check_parameters(
    model: str, params: Optional[Mapping[str, Any]], known: Mapping[str, Parser], divisor: Sequence[int] = (1, 1, 1)
) -> Dict[str, Any]:
    """The request's parameters, converted; :class:`RequestError` (422) for the first problem.

    Args:
        model: the recipe's name (for the messages).
        params: the request body (``None``: no parameters).
        known: parameter name -> parser (:data:`TRAINING_PARAMETERS` plus the recipe's).
        divisor: the network's down-sampling factor per axis (H, W, D); ``patch_size`` must be a
            multiple of it, or the network pads every patch and trains on its own padding.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise RequestError(f"training parameters of {model!r} must be a JSON object, got {type(params).__name__}")
    unknown = sorted(k for k in params if k not in known and k not in IGNORED_KEYS)
    if unknown:
        raise RequestError(f"unknown training parameter(s) {unknown} for {model!r}; known: {sorted(known)}")
    checked: Dict[str, Any] = {}
    for key, value in params.items():
        if key in IGNORED_KEYS:
            checked[key] = value
            continue
        try:
            checked[key] = known[key](value)
        except ValueError as e:
            raise RequestError(f"training parameter {key!r} of {model!r} must be {e}, got {value!r}") from None
    patch = checked.get("patch_size")
    if patch is not None and any(p % d for p, d in zip(patch, divisor)):
        raise RequestError(
            f"training parameter 'patch_size' of {model!r} must be a multiple of the network's "
            f"down-sampling {list(divisor)} per axis, got {patch}; e.g. "
            f"{[max(d, p - p % d) for p, d in zip(patch, divisor)]}"
        )
    return checked
