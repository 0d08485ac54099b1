"""What every recipe's TaskConfig shares (a mixin: MONAI Label registers only classes whose
*direct* base is ``TaskConfig``, so each ``lib/configs/<recipe>.py`` declares
``class <Recipe>(RecipeConfig, TaskConfig)`` and sets its trainer class and network).

Conf keys read here (declared in :mod:`lib.conf`): ``target_spacing``, ``patch_size``,
``dropout``, ``scribble_tag``, ``gt_tag``, ``largest_component`` (default
:meth:`RecipeConfig.default_largest_component`), and for the 2D recipes ``unet2d_features``,
``mix``, ``mix_occlusion``.
"""

import os
from typing import Any, Dict, Optional

import torch

from lib.conf import conf_choice, conf_flag, conf_float, conf_int, conf_json, conf_text
from lib.datastore import scribble_tag
from lib.infers import ScribbleSegmentation
from lib.model_meta import meta_path
from lib.networks import AttentionUNet2D5
from lib.scribbles.convention import ScribbleConvention
from lib.trainers.base import ScribbleTrainTask


def conf_dropout(conf: Dict[str, str]) -> float:
    """Conf ``dropout``: what MC-dropout scoring samples from."""
    return conf_float(conf, "dropout", minimum=0, maximum=1)


def _positive_list(conf: Dict[str, str], name: str, length: Optional[int] = None) -> list:
    """A JSON list of positive numbers (``length`` of them when given), naming the key otherwise."""
    value = conf_json(conf, name)
    ok = isinstance(value, list) and value and all(isinstance(v, (int, float)) and v > 0 for v in value)
    if not ok or (length is not None and len(value) != length):
        size = f"{length} " if length else ""
        raise ValueError(f"conf {name} must be a JSON list of {size}positive numbers, got {conf.get(name)!r}")
    return value


UNANCHORED_LARGEST_COMPONENT = "false"
"""``largest_component`` for a dataset conf that names no ``anchor_structure``: every component kept
(see :meth:`RecipeConfig.default_largest_component`)."""


class RecipeConfig:
    """One recipe = one trainer + one segmentation infer task, both named after the config file."""

    trainer_class = ScribbleTrainTask
    description = ""
    benchmark_only = False
    """Registered only when named in conf ``models`` (not by ``all``): e.g. ``full`` needs dense masks."""
    anchored_components = False
    """Segmentations keep the components bordering conf ``anchor_structure``, when the dataset names
    one, instead of the largest component per structure (recipes whose networks paint false blobs
    of a class away from the structures it borders)."""

    def init(
        self,
        name: str,
        model_dir: str,
        conf: Dict[str, str],
        planner: Any,
        convention: Optional[ScribbleConvention] = None,
        device: str = "cpu",
        **kwargs,
    ):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.convention = convention or ScribbleConvention.from_conf(conf)
        self.labels = dict(self.convention.labels)
        self.device = device
        self.path = [os.path.join(model_dir, f"pretrained_{name}.pt"), os.path.join(model_dir, f"{name}.pt")]
        spacing = conf_text(conf, "target_spacing")
        self.target_spacing = "auto" if spacing.lower() == "auto" else _positive_list(conf, "target_spacing", 3)
        self.patch_size = [int(v) for v in _positive_list(conf, "patch_size", 3)]
        self.network = self.build_network(conf)

    def build_network(self, conf: Dict[str, str]) -> torch.nn.Module:
        return AttentionUNet2D5(in_channels=1, out_channels=self.convention.num_classes, dropout=conf_dropout(conf))

    def infer(self):
        explicit = None if isinstance(self.target_spacing, str) else self.target_spacing
        return ScribbleSegmentation(
            self.name,
            self.path,
            self.network,
            self.convention,
            meta_path(self.path[1]),
            target_spacing=explicit,
            description=self.description,
            config={"device": self.device},
            largest_component=conf_text(self.conf, "largest_component") or self.default_largest_component(),
            **self.infer_kwargs(),
        )

    def default_largest_component(self) -> str:
        """``largest_component`` when the conf sets none.

        - The conf names an ``anchor_structure`` (the dataset declares connected anatomy, e.g. the
          cardiac phantoms): anchored on it where the recipe sets ``anchored_components``, else the
          largest component per structure.
        - It names none: ``"false"``, every component kept. Nothing says a user's structures are in
          one piece, and on real volumes many are not (ribs, intervertebral discs), so cutting each
          class to one component deletes correct voxels; see
          ``benchmarks/results/recipes_real.md``, connected-component table.
        """
        anchor = conf_text(self.conf, "anchor_structure")
        if not anchor:
            return UNANCHORED_LARGEST_COMPONENT
        try:
            name = self.convention.configured_name(anchor)
        except ValueError as e:
            raise ValueError(f"conf anchor_structure: {e}") from None
        return name if self.anchored_components else "true"

    def infer_kwargs(self) -> Dict[str, Any]:
        """Recipe-specific keyword arguments of the segmentation infer task (from conf)."""
        return {}

    def trainer(self):
        load_path = self.path[0] if os.path.exists(self.path[0]) else self.path[1]
        return self.trainer_class(
            model_dir=os.path.join(self.model_dir, self.name),
            network=self.network,
            convention=self.convention,
            publish_path=self.path[1],
            load_path=load_path,
            description=self.description,
            scribble_tag=scribble_tag(self.conf),
            gt_tag=conf_text(self.conf, "gt_tag"),
            target_spacing=self.target_spacing,
            patch_size=self.patch_size,
            config={"device": self.device},
            **self.trainer_kwargs(),
        )

    def trainer_kwargs(self) -> Dict[str, Any]:
        """Recipe-specific keyword arguments of ``trainer_class`` (from conf)."""
        return {}


class MixRecipeConfig(RecipeConfig):
    """Shared by ``exmod`` and ``zscribbleseg``: a slice-wise 2D UNet (``network_class``, widths
    from conf ``unet2d_features``) and the mix conf (``mix``, ``mix_occlusion``).

    Components anchored on conf ``anchor_structure`` when set: slice by slice, the 2D networks also
    paint structures into slices that hold none and carry no stroke, blobs that the per-class rule
    may keep instead of the true ones; they do not border the anchor."""

    network_class = None
    anchored_components = True

    def build_network(self, conf):
        return self.network_class(
            out_channels=self.convention.num_classes,
            dropout=conf_dropout(conf),
            features=[int(v) for v in _positive_list(conf, "unet2d_features")],
        )

    def trainer_kwargs(self):
        return {
            "occlusion": conf_int(self.conf, "mix_occlusion", minimum=0),
            "mix": conf_choice(self.conf, "mix", ("cutmix", "mixup", "none")),
            "outer_slices_background": conf_flag(self.conf, "mix_outer_slices_background"),
            "pce_mean": conf_choice(self.conf, "mix_pce_mean", ("annotated", "all")),
            **self.recipe_kwargs(),
        }

    def recipe_kwargs(self) -> Dict[str, Any]:
        return {}
