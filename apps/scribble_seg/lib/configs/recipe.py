"""What every recipe's TaskConfig shares (a mixin: MONAI Label registers only classes whose
*direct* base is ``TaskConfig``, so each ``lib/configs/<recipe>.py`` declares
``class <Recipe>(RecipeConfig, TaskConfig)`` and sets its trainer class and network).

Conf keys read here (all optional): ``target_spacing`` (JSON mm list or ``auto``), ``patch_size``
(JSON, default ``[96, 96, 16]``), ``dropout`` (default 0.1), ``scribble_tag``, ``gt_tag``,
``largest_component`` (``true``, the default of most recipes: keep one connected component per
structure at inference; ``object``: the largest foreground object, then one component per
structure in it; a structure name: that structure's largest component, then per structure the
component bordering it most -- the default of the recipes that set ``anchored_components``:
Scribble2D5, ExMod, ZScribbleSeg, :meth:`default_largest_component`; ``false``).
"""

import json
import os
from typing import Any, Dict, Optional

import torch

from lib.datastore import scribble_tag
from lib.infers import ScribbleSegmentation
from lib.networks import AttentionUNet2D5
from lib.scribbles.convention import ScribbleConvention
from lib.trainers.base import ScribbleTrainTask, meta_path

DROPOUT = 0.1
"""Dropout of the recipes' networks (conf ``dropout``): what MC-dropout scoring samples from."""


def conf_dropout(conf: Dict[str, str]) -> float:
    """Conf ``dropout`` (default :data:`DROPOUT`)."""
    return float(conf.get("dropout", DROPOUT))


def conf_flag(conf: Dict[str, str], key: str, default: bool = True) -> bool:
    """A ``true``/``false`` conf value (anything else is a configuration error)."""
    value = str(conf.get(key, str(default))).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"conf {key} must be true or false, got {value!r}")
    return value == "true"


class RecipeConfig:
    """One recipe = one trainer + one segmentation infer task, both named after the config file."""

    trainer_class = ScribbleTrainTask
    description = ""
    benchmark_only = False
    """Registered only when named in conf ``models`` (not by ``all``): e.g. ``full`` needs dense masks."""
    anchored_components = False
    """Segmentations keep the components bordering the labels' anchor structure (``ANCHOR_STRUCTURES``)
    by default instead of the largest component per structure; set where fresh phantoms showed it."""

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
        spacing = conf.get("target_spacing", "auto")
        self.target_spacing = spacing if spacing.strip().lower() == "auto" else json.loads(spacing)
        self.patch_size = json.loads(conf.get("patch_size", "[96, 96, 16]"))
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
            largest_component=self.conf.get("largest_component", self.default_largest_component()),
            **self.infer_kwargs(),
        )

    def default_largest_component(self) -> str:
        """``largest_component`` when the conf sets none: anchored on the labels' anchor structure
        where the recipe sets ``anchored_components`` and the labels have one, else the largest
        component per structure."""
        return (self.convention.anchor_structure if self.anchored_components else None) or "true"

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
            gt_tag=self.conf.get("gt_tag", "gt"),
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

    Components anchored on the myocardium by default: slice by slice, the 2D networks also paint
    structures into slices that hold none and carry no stroke (above and below the heart), blobs
    that the per-class rule often keeps instead of the heart's; they do not border the anchor."""

    network_class = None
    anchored_components = True

    def build_network(self, conf):
        return self.network_class(
            out_channels=self.convention.num_classes,
            dropout=conf_dropout(conf),
            features=json.loads(conf.get("unet2d_features", "[64, 128, 256, 512, 1024]")),
        )

    def trainer_kwargs(self):
        return {
            "occlusion": int(self.conf.get("mix_occlusion", 32)),
            "mix": self.conf.get("mix", "cutmix"),
            **self.recipe_kwargs(),
        }

    def recipe_kwargs(self) -> Dict[str, Any]:
        return {}
