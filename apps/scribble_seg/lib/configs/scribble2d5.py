import json

from monailabel.interfaces.config import TaskConfig

from lib.networks import AttentionUNet2D5
from lib.scribbles.propagation import PropagationParams
from lib.trainers.scribble2d5 import Scribble2D5TrainTask

from .recipe import RecipeConfig
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
    :func:`lib.scribbles.propagation.background_beyond_strokes`; on the accuracy benchmark, where
    every slice showing a structure is scribbled, 96.7 +- 0.3 % of ``full``'s mean Dice over three
    seeds against 93.4 +- 1.0 % without, ``benchmarks/results/accuracy.md``).

    The per-class default: on the accuracy benchmark's phantoms, 6 mm myocardium supervoxels scored
    0.922 mean Dice vs 0.893 with 12 mm for all (myocardium 0.887 vs 0.803), and on fresh phantoms
    never trained on 0.908 vs 0.892 (seeds 400..) and 0.896 vs 0.884 (seeds 300..), one training
    each (``benchmarks/results/accuracy.md``, ``components.md``)."""

    description = "Scribble2D5: 2.5D attention UNet + label propagation + static boundary + active boundary loss"

    def build_network(self, conf):
        boundary = _flag(conf, "scribble2d5_boundary")
        return AttentionUNet2D5(
            in_channels=1,
            out_channels=self.convention.num_classes,
            dropout=float(conf.get("dropout", 0.1)),
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
    """Anchored on the myocardium where the labels have one (``ANCHOR_STRUCTURES``): on 8 phantoms
    generated after the rule was written, every one of six trained Scribble2D5 rows scored at
    least as high as with the per-class rule (w/o ABL 0.836 -> 0.916) and no RV was lost (5 with
    the per-class rule) -- ``benchmarks/results/components.md``. Not so for ``can_em``'s networks
    (mixed), which keep the per-class default."""


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
