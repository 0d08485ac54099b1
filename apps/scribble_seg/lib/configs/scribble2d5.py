import json

from monailabel.interfaces.config import TaskConfig

from lib.networks import AttentionUNet2D5
from lib.scribbles.propagation import PropagationParams
from lib.trainers.scribble2d5 import Scribble2D5TrainTask

from .recipe import RecipeConfig, conf_dropout
from .recipe import conf_flag as _flag


class Scribble2D5(RecipeConfig, TaskConfig):
    """``scribble2d5``: the headline 2.5D model -- label propagation, static boundary, active boundary loss.

    Conf (ablations of the paper's Table 2): ``scribble2d5_lpm``, ``scribble2d5_boundary``,
    ``scribble2d5_abl`` (``true``/``false``), ``scribble2d5_supervoxel_mm`` (12),
    ``scribble2d5_class_supervoxel_mm`` (JSON ``{"class name": mm}``, per-class sizes; default: the
    labels' thin structures, ``{"myocardium": 6}`` where there is one --
    :data:`lib.scribbles.convention.THIN_STRUCTURES`; ``{}`` for one size for all),
    ``scribble2d5_attention_supervision`` (0), ``scribble2d5_outer_slices_background`` (``false``;
    ``true`` when every slice showing a structure is scribbled: the slices beyond the stroked
    range become background in the pseudo mask (so only with LPM on), see
    :func:`lib.scribbles.propagation.background_beyond_strokes`).

    The per-class default: a 12 mm supervoxel crossed by a stroke on a thin wall spills into the
    tissue around it; smaller supervoxels keep that class's pseudo labels precise while the other
    classes keep the coverage of the larger ones."""

    description = "Scribble2D5: 2.5D attention UNet + label propagation + static boundary + active boundary loss"

    def build_network(self, conf):
        boundary = _flag(conf, "scribble2d5_boundary")
        return AttentionUNet2D5(
            in_channels=1,
            out_channels=self.convention.num_classes,
            dropout=conf_dropout(conf),
            boundary=boundary,
            refinement=boundary,
        )

    def trainer_kwargs(self):
        conf = self.conf
        return {
            "lpm": _flag(conf, "scribble2d5_lpm"),
            "boundary": _flag(conf, "scribble2d5_boundary"),
            "abl": _flag(conf, "scribble2d5_abl"),
            "attention_supervision": float(conf.get("scribble2d5_attention_supervision", 0.0)),
            "propagation": PropagationParams(
                supervoxel_mm=float(conf.get("scribble2d5_supervoxel_mm", PropagationParams.supervoxel_mm)),
                class_supervoxel_mm=_class_sizes(conf.get("scribble2d5_class_supervoxel_mm"), self.convention),
                outer_slices_background=_flag(conf, "scribble2d5_outer_slices_background", False),
            ),
        }

    trainer_class = Scribble2D5TrainTask

    anchored_components = True
    """Anchored on the myocardium where the labels have one (``ANCHOR_STRUCTURES``): a false blob
    of one class can outgrow the true structure, but it does not border the anchor as much
    (:func:`lib.scribbles.components.anchored_labels`). ``can_em``'s networks keep the per-class
    default, where the anchored rule did not help consistently."""


def _class_sizes(text, convention) -> tuple:
    """``scribble2d5_class_supervoxel_mm`` (``{"myocardium": 8}``) as checked ``((name, mm), ...)``;
    unset: the labels' thin structures (:meth:`ScribbleConvention.thin_structure_supervoxels`)."""
    if text is None:
        return convention.thin_structure_supervoxels()
    if not text.strip():
        return ()
    try:
        sizes = json.loads(text)
        if not isinstance(sizes, dict):
            raise ValueError
        params = PropagationParams(class_supervoxel_mm=tuple((str(n), float(mm)) for n, mm in sizes.items()))
    except (TypeError, ValueError):
        raise ValueError(
            f"scribble2d5_class_supervoxel_mm must be a JSON object of class name -> mm > 0, got {text!r}"
        ) from None
    params.sizes(convention)  # unknown class names fail here, at startup
    return params.class_supervoxel_mm
