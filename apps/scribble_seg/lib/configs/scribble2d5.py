import json

from monailabel.interfaces.config import TaskConfig

from lib.conf import conf_flag, conf_float, conf_text
from lib.networks import AttentionUNet2D5
from lib.scribbles.propagation import PropagationParams
from lib.trainers.scribble2d5 import Scribble2D5TrainTask

from .recipe import RecipeConfig


class Scribble2D5(RecipeConfig, TaskConfig):
    """``scribble2d5``: the headline 2.5D model -- label propagation, static boundary, active boundary loss.

    Conf: the ``scribble2d5_*`` keys of :mod:`lib.conf` (``_lpm``, ``_boundary``, ``_abl`` are the
    paper's Table 2 ablations; ``_outer_slices_background``:
    :func:`lib.scribbles.propagation.background_beyond_strokes`)."""

    description = "Scribble2D5: 2.5D attention UNet + label propagation + static boundary + active boundary loss"

    def build_network(self, conf):
        boundary = conf_flag(conf, "scribble2d5_boundary")
        return AttentionUNet2D5(
            in_channels=1,
            out_channels=self.convention.num_classes,
            dropout=conf_float(conf, "dropout", minimum=0, maximum=1),
            boundary=boundary,
            refinement=boundary,
        )

    def trainer_kwargs(self):
        conf = self.conf
        return {
            "lpm": conf_flag(conf, "scribble2d5_lpm"),
            "boundary": conf_flag(conf, "scribble2d5_boundary"),
            "abl": conf_flag(conf, "scribble2d5_abl"),
            "attention_supervision": conf_float(conf, "scribble2d5_attention_supervision", minimum=0),
            "propagation": PropagationParams(
                supervoxel_mm=conf_float(conf, "scribble2d5_supervoxel_mm", minimum=0),
                class_supervoxel_mm=_class_sizes(conf_text(conf, "scribble2d5_class_supervoxel_mm"), self.convention),
                outer_slices_background=conf_flag(conf, "scribble2d5_outer_slices_background"),
            ),
        }

    trainer_class = Scribble2D5TrainTask

    anchored_components = True
    """Anchored on conf ``anchor_structure`` when the dataset names one: a false blob of one class
    can outgrow the true structure, but it does not border the anchor as much
    (:func:`lib.scribbles.components.anchored_labels`). ``can_em``'s networks keep the per-class
    rule, where the anchored one did not help consistently."""


def _class_sizes(text, convention) -> tuple:
    """``scribble2d5_class_supervoxel_mm`` (``{"myocardium": 8}``, text or parsed) as checked
    ``((name, mm), ...)``; unset or ``{}``: one size for every class."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return ()
    try:
        sizes = json.loads(text) if isinstance(text, str) else text
        if not isinstance(sizes, dict):
            raise ValueError
        params = PropagationParams(class_supervoxel_mm=tuple((str(n), float(mm)) for n, mm in sizes.items()))
    except (TypeError, ValueError):
        raise ValueError(
            f"scribble2d5_class_supervoxel_mm must be a JSON object of class name -> mm > 0, got {text!r}"
        ) from None
    params.sizes(convention)  # unknown class names fail here, at startup
    return params.class_supervoxel_mm
