"""Every conf key of the app (``--conf key value``), its default and its meaning: the one place
they are declared and documented, and the readers that turn the strings into checked values.

``KEYS`` is the registry; the README's conf table is :func:`markdown_table` (a test holds them
equal, so neither drifts). The readers take a key's default from the registry and raise a
``ValueError`` naming the key and what it takes, which stops the server at start-up::

    conf_int(conf, "al_retrain_after", minimum=0)      # -> 5 when the conf omits it
    conf_flag(conf, "scribble2d5_lpm")                 # 'true' / 'false' only
    conf_json(conf, "patch_size")                      # -> [96, 96, 16]

A key whose default depends on other settings (``device``, ``al_model``, ...) has ``default``
``None`` and says in ``shown`` what the app then uses. Keys MONAI Label itself reads
(``preload``, ``server_mode``, ...) are passed through untouched and are not listed here.

A dataset brings its own conf in ``<studies>/scribble_seg.json`` (:data:`DATASET_CONF`): its labels
and whatever its anatomy needs (the phantoms: ``anchor_structure`` ``myocardium`` and 6 mm
supervoxels for the thin myocardium). ``--conf`` overrides it; the defaults here are neutral, with
no anatomy assumed.
"""

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

from lib.scribbles.convention import parse_labels
from lib.scribbles.propagation import PropagationParams
from lib.scribbles.random_walk import RandomWalkParams
from lib.scribbles.relabel import DEFAULT_ALPHA, MC_PASSES
from lib.scribbles.seed_areas import DEFAULT_TAU

MONAI_LABEL_KEYS = ("preload", "server_mode", "auth_token", "zoo_repo", "zoo_source", "skip_scoring", "skip_strategies")
"""Conf keys that MONAI Label's own classes read: accepted without a warning."""


@dataclass(frozen=True)
class ConfKey:
    """One conf key: ``default`` is the value used when the conf omits it (``None``: derived from
    other settings, described by ``shown``), ``doc`` what it does, ``group`` its README section."""

    name: str
    default: Any
    doc: str
    group: str
    shown: Optional[str] = None

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, (list, tuple, dict)):
            return json.dumps(list(self.default) if isinstance(self.default, tuple) else self.default)
        return str(self.default)


DATASET_CONF = "scribble_seg.json"
"""File in a studies folder holding that dataset's conf (a JSON object of conf keys)."""

SERVING, ACTIVE, SCRIBBLE2D5, CAN_EM, MIX, WEAKNET = (
    "serving and training",
    "active learning",
    "scribble2d5",
    "can_em",
    "exmod and zscribbleseg",
    "weaknet",
)

_KEYS = (
    # ---------------------------------------------------------------- serving and training
    ConfKey("models", "all", "comma-separated recipes of `lib/configs/`; `all`: all but `full`", SERVING),
    ConfKey(
        "labels",
        None,
        'JSON `{"name": id}` (ids 1..K) or comma-separated names',
        SERVING,
        "the studies' `scribble_seg.json`; required otherwise",
    ),
    ConfKey("background_scribble_id", None, "value of background strokes", SERVING, "`len(labels) + 1`"),
    ConfKey("scribble_tag", "final", "datastore tag holding the training scribbles", SERVING),
    ConfKey(
        "scribble_label_info",
        "required",
        "scribbles name their values in `label_info` (Slicer does); `optional`: bare maps too",
        SERVING,
    ),
    ConfKey("device", None, "`cpu`, `cuda` or `cuda:N`: where models run", SERVING, "`cuda` if available, else `cpu`"),
    ConfKey(
        "target_spacing",
        "auto",
        "spacing of training and inference (mm, JSON list); `auto`: the median",
        SERVING,
    ),
    ConfKey(
        "patch_size",
        (96, 96, 16),
        "training patch, a multiple of the network's stride (32, 32, 8)",
        SERVING,
    ),
    ConfKey("dropout", 0.1, "dropout of the networks (> 0 for MC-dropout scoring)", SERVING),
    ConfKey(
        "largest_component",
        None,
        "`true`: one component per structure; a structure name: anchored on it; `object`: the largest "
        "object first; `false`: off. Also an infer parameter",
        SERVING,
        "`false`; with `anchor_structure` set: `true`, anchored recipes: the anchor",
    ),
    ConfKey(
        "anchor_structure",
        None,
        "a structure bordering all others (a myocardium): `scribble2d5`, `exmod`, `zscribbleseg` keep its "
        "largest component and, of each other class, the one bordering it most",
        SERVING,
        "none (every component kept)",
    ),
    ConfKey("gt_tag", "gt", "tag of dense ground truth: validation metrics only", SERVING),
    ConfKey("refinement", True, "`false` hides the `crf` / `random_walk` refinement tasks", SERVING),
    ConfKey("max_upload_mb", 1024, "largest image or label accepted (larger: HTTP 413)", SERVING),
    ConfKey(
        "dataset_conf",
        "",
        f"with `--studies <DICOMweb URL>`: a dataset's `{DATASET_CONF}` to read as a local folder's would be",
        SERVING,
        "none",
    ),
    ConfKey(
        "click_radius_mm", 3.0, "`scribble_clicks` (OHIF's point prompts): radius of the stroke a click draws", SERVING
    ),
    ConfKey("click_method", "random_walk", "`scribble_clicks`: `random_walk` or `crf` refines the clicks", SERVING),
    ConfKey("dicomweb_modalities", ["CT", "MR"], "with `--studies <DICOMweb URL>`: series modalities served", SERVING),
    ConfKey(
        "dicomweb_listing_s",
        10,
        "with `--studies <DICOMweb URL>`: seconds a series listing is reused (labels are always re-read)",
        SERVING,
    ),
    ConfKey(
        "infer_in_worker",
        True,
        "inference on one worker thread, other requests answered meanwhile",
        SERVING,
    ),
    ConfKey(
        "background_niceness",
        10,
        "priority drop (0..19) of training and scoring subprocesses (0 = off)",
        SERVING,
    ),
    ConfKey("points_tag", "points", "datastore tag of Weak-Net surface points", SERVING),
    # ------------------------------------------------------------------------ active learning
    ConfKey(
        "al_model",
        None,
        "model whose uncertainty drives `next_to_scribble`",
        ACTIVE,
        "`scribble2d5`, else the first model",
    ),
    ConfKey("al_passes", 6, "MC-dropout passes (at least 2)", ACTIVE),
    ConfKey("al_metric", "mutual_information", "`mutual_information` or `entropy`", ACTIVE),
    ConfKey("al_margin_mm", 16, "margin around the predicted foreground's box scored", ACTIVE),
    ConfKey(
        "al_bfloat16",
        "auto",
        "bfloat16 scoring: `auto` where native (AVX-512 BF16, AMX, GPU); `true`, `false`",
        ACTIVE,
    ),
    ConfKey("al_exclusion_minutes", 10, "a volume served this recently is not served again", ACTIVE),
    ConfKey("al_diversity", 0.5, "discount for volumes like scribbled ones (0 = off)", ACTIVE),
    ConfKey("al_retrain_after", 5, "submissions that start a training (0 = never)", ACTIVE),
    ConfKey("al_recipe", None, "recipe that training trains", ACTIVE, "`al_model`"),
    ConfKey("al_retrain_params", {}, 'its JSON parameters, e.g. `{"max_epochs": 5}`', ACTIVE),
    # ----------------------------------------------------------------------------- scribble2d5
    ConfKey("scribble2d5_lpm", True, "label propagation (the paper's ablations)", SCRIBBLE2D5),
    ConfKey("scribble2d5_boundary", True, "static boundary module", SCRIBBLE2D5),
    ConfKey("scribble2d5_abl", True, "active boundary loss", SCRIBBLE2D5),
    ConfKey("scribble2d5_supervoxel_mm", PropagationParams.supervoxel_mm, "supervoxel size (mm)", SCRIBBLE2D5),
    ConfKey(
        "scribble2d5_class_supervoxel_mm",
        {},
        'per-class sizes for thin structures, JSON `{"name": mm}`',
        SCRIBBLE2D5,
    ),
    ConfKey("scribble2d5_attention_supervision", 0.0, "attention deep-supervision weight", SCRIBBLE2D5),
    ConfKey(
        "scribble2d5_outer_slices_background",
        False,
        "slices beyond the scribbled ones are background (every-slice scribbling)",
        SCRIBBLE2D5,
    ),
    # ---------------------------------------------------------------------------------- can_em
    ConfKey("can_em_recursions", 3, "EM recursions", CAN_EM),
    ConfKey(
        "can_em_epochs_per_recursion",
        0,
        "epochs per M step; 0: `max_epochs` split over the recursions",
        CAN_EM,
    ),
    ConfKey(
        "can_em_schedule",
        "restart",
        "M-step learning rate: `restart` each, or `continued`: one decay over all",
        CAN_EM,
    ),
    ConfKey("can_em_crf", True, "dense-CRF relabelling (Table 1 rows)", CAN_EM),
    ConfKey(
        "can_em_crf_mode",
        "3d",
        "`3d`, or `slice`: Can et al.'s 2D CRF per slice, z-scored, 100 iterations",
        CAN_EM,
    ),
    ConfKey("can_em_seed_areas", "3d", "`3d` random walk, or `slice`: one 2D walk per stroked slice", CAN_EM),
    ConfKey(
        "can_em_outer_slices_background",
        False,
        "slices beyond the scribbled ones are background seeds (every-slice scribbling)",
        CAN_EM,
    ),
    ConfKey("can_em_uncertainty", True, "MC-dropout Welch-test relabelling", CAN_EM),
    ConfKey("can_em_passes", MC_PASSES, "MC-dropout passes of the E step", CAN_EM),
    ConfKey("can_em_alpha", DEFAULT_ALPHA, "Welch-test significance", CAN_EM),
    ConfKey("can_em_tau", DEFAULT_TAU, "seed-area threshold", CAN_EM),
    ConfKey("can_em_beta", RandomWalkParams.beta, "seed-area random-walk beta", CAN_EM),
    ConfKey("can_em_relabel_tag", "can_em", "tag of the relabelled maps", CAN_EM),
    ConfKey(
        "can_em_dropout",
        (0.0, 0.0, 0.0, 0.5, 0.5, 0.5),
        "dropout per UNet level (JSON list or a number)",
        CAN_EM,
    ),
    ConfKey(
        "can_em_dropout_placement",
        "units",
        "`units`: in every residual sub-unit; `blocks`: one per block output (Can et al.'s)",
        CAN_EM,
    ),
    # ------------------------------------------------------------------- exmod and zscribbleseg
    ConfKey(
        "unet2d_features",
        (64, 128, 256, 512, 1024),
        "2D UNet widths (the papers')",
        MIX,
    ),
    ConfKey("mix_occlusion", 32, "occluded square (px)", MIX),
    ConfKey("mix", "cutmix", "`cutmix` (saliency-guided), `mixup`, `none`", MIX),
    ConfKey(
        "mix_outer_slices_background",
        False,
        "slices beyond the scribbled ones are background (every-slice scribbling)",
        MIX,
    ),
    ConfKey("mix_pce_mean", "annotated", "partial CE over the `annotated` voxels or `all` (CycleMix)", MIX),
    ConfKey("exmod_global_weight", 0.1, "mix consistency weight", MIX),
    ConfKey("exmod_local_weight", 0.1, "integrity consistency weight", MIX),
    ConfKey("zscribbleseg_prior_start_epoch", 5, "first epoch of the EM + spatial-prior loss", MIX),
    ConfKey("zscribbleseg_prior_weight", 1.0, "spatial-prior weight", MIX),
    ConfKey("zscribbleseg_global_weight", 0.05, "global consistency weight", MIX),
    ConfKey("zscribbleseg_local_weight", 1.0, "local consistency weight", MIX),
    ConfKey(
        "zscribbleseg_em_max_ratio",
        4.0,
        "EM ratios beyond this factor of the scribbles' are not used",
        MIX,
    ),
    # --------------------------------------------------------------------------------- weaknet
    ConfKey("weaknet_lambda", 1.0, "reconstruction loss weight", WEAKNET),
    ConfKey("weaknet_boundary_mm", 5.0, "band around the template's boundary", WEAKNET),
    ConfKey("weaknet_low_weight", 0.1, "weight outside the band", WEAKNET),
    ConfKey("weaknet_threshold", 0.5, "foreground threshold", WEAKNET),
)

KEYS: Dict[str, ConfKey] = {k.name: k for k in _KEYS}


def write_dataset_conf(studies: str, conf: Mapping[str, Any]) -> str:
    """Write ``conf`` as ``studies``' :data:`DATASET_CONF` (every key must be declared)."""
    undeclared = [k for k in conf if k not in KEYS]
    if undeclared:
        raise KeyError(f"conf keys {undeclared} are not declared in lib/conf.py")
    path = os.path.join(studies, DATASET_CONF)
    with open(path, "w") as f:
        json.dump(dict(conf), f, indent=1)
    return path


def with_dataset_conf(conf: Mapping[str, Any], studies: str, remote_conf: str = "") -> Dict[str, Any]:
    """``conf`` over the dataset's own: :data:`DATASET_CONF` in a local ``studies`` folder when there is
    one, or the file ``remote_conf`` (conf ``dataset_conf``) when ``studies`` is a DICOMweb URL. Every
    value as the string ``--conf`` would give (JSON for objects and lists). A ``labels`` conf other than
    the dataset's sets the dataset's conf aside: its other keys (an anchor, thin structures) describe
    its own labels.

    Raises:
        ValueError: the file is not a JSON object, or ``remote_conf`` is not a file.
    """
    remote = (studies or "").startswith(("http://", "https://"))
    path = remote_conf if remote else os.path.join(studies or "", DATASET_CONF)
    if not studies or not path or not os.path.isfile(path):
        if path and remote:
            raise ValueError(f"conf dataset_conf: {path} is not a file")
        return dict(conf)
    try:
        with open(path) as f:
            dataset = json.load(f)
        if not isinstance(dataset, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if _raw(conf, "labels") is not None and "labels" in dataset:
        if parse_labels(conf["labels"]) != parse_labels(dataset["labels"]):
            return dict(conf)
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in dataset.items()}
    return {**text, **conf}


def _raw(conf: Mapping[str, Any], name: str) -> Optional[str]:
    """The conf's text for ``name``; ``None`` when absent or blank (the default applies)."""
    if name not in KEYS:
        raise KeyError(f"conf key {name!r} is not declared in lib/conf.py")
    value = conf.get(name)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def conf_text(conf: Mapping[str, Any], name: str) -> Any:
    """The key's text, else its declared default as is (``None`` for a derived one; a JSON key's
    default stays a Python value: read those with :func:`conf_json`)."""
    raw = _raw(conf, name)
    return raw if raw is not None else KEYS[name].default


def _number(conf, name, kind, what, minimum, maximum):
    raw = _raw(conf, name)
    if raw is None:
        default = KEYS[name].default
        return None if default is None else kind(default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    in_range = (
        value is not None
        and value == value  # not NaN
        and abs(value) != float("inf")
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not in_range:
        if minimum is not None and maximum is not None:
            what += f" in {minimum}..{maximum}"
        elif minimum is not None:
            what += f", at least {minimum}"
        raise ValueError(f"conf {name} must be {what}, got {raw!r}")
    return value


def conf_int(conf, name: str, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """A whole number (``ValueError`` naming the key otherwise)."""
    return _number(conf, name, int, "a whole number", minimum, maximum)


def conf_float(conf, name: str, minimum: Optional[float] = None, maximum: Optional[float] = None) -> float:
    """A finite number (``ValueError`` naming the key otherwise)."""
    return _number(conf, name, float, "a number", minimum, maximum)


def conf_flag(conf, name: str) -> bool:
    """``true`` or ``false`` (anything else is a configuration error)."""
    raw = _raw(conf, name)
    if raw is None:
        return bool(KEYS[name].default)
    if raw.lower() not in ("true", "false"):
        raise ValueError(f"conf {name} must be true or false, got {raw!r}")
    return raw.lower() == "true"


def conf_choice(conf, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (case-insensitive)."""
    raw = _raw(conf, name)
    value = (raw if raw is not None else KEYS[name].default).lower()
    if value not in choices:
        raise ValueError(f"conf {name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def conf_json(conf, name: str) -> Any:
    """Parsed JSON (a tuple default comes back as a list, as JSON would give it)."""
    raw = _raw(conf, name)
    if raw is None:
        default = KEYS[name].default
        return list(default) if isinstance(default, tuple) else default
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"conf {name} must be JSON, e.g. {KEYS[name].default_text}, got {raw!r}") from None


def unknown_keys(conf: Mapping[str, Any]) -> list:
    """Conf keys neither this app nor MONAI Label reads (typically a typo)."""
    return sorted(k for k in conf if k not in KEYS and k not in MONAI_LABEL_KEYS)


def markdown_table() -> str:
    """The README's conf table: one section per group, ``| key | default | meaning |``."""
    lines = []
    for group in dict.fromkeys(k.group for k in _KEYS):
        lines += [f"**{group}**", "", "| key | default | meaning |", "|---|---|---|"]
        for k in (k for k in _KEYS if k.group == group):
            default = k.default_text if k.shown is not None else f"`{k.default_text}`"
            lines.append(f"| `{k.name}` | {default} | {k.doc} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
