"""``weaknet``: Weak-Net (sparse 3D surface points -> deformed templates -> segmenter +
reconstructor), after "Efficient segmentation of 3D structures with sparse surface points"
(seed paper 003; no public code).

* **targets**: per volume with points under the datastore tag ``points_tag`` (label map and/or
  JSON, :func:`lib.scribbles.points.points_of`), one spherical template per structure deformed
  to its points and rasterised at the image's grid (:func:`lib.scribbles.points.template_labels`),
  written next to the model (``model/weaknet/templates``) and trained on as dense masks;
* **loss** (Eq. 1)::

      L = CE(Y_hat, Y) + lambda * mean(W * (X - g(softmax(Y_hat)))^2)

  ``g`` a small reconstruction UNet (MONAI ``BasicUNet``) trained jointly and used only in
  training; ``W`` = 1 within ``boundary_mm`` of the template's boundaries, ``low_weight``
  elsewhere (:mod:`lib.losses.reconstruction`);
* **inference**: the segmenter alone (the app's segmentation infer task), a voxel is foreground
  when ``1 - p(background) > gamma`` (conf ``weaknet_threshold``).

The paper's ``lambda = 1e-4`` multiplies sums of squared raw intensity differences; images here
are z-scored, and the default ``lambda = 1`` puts both terms at the same order of magnitude at
the start of training (not tuned).
"""

import os

import numpy as np
import torch
from monai.networks.nets import BasicUNet
from monai.transforms import LoadImage

from lib.datasets.study import read_spacing, write_nifti
from lib.errors import RequestError
from lib.losses import PartialCrossEntropyLoss, WeightedReconstructionLoss
from lib.networks import final_logits
from lib.scribbles.points import points_of, template_labels
from lib.transforms import TemplateWeightsd

from .base import ScribbleTrainTask


class WeakNetTrainTask(ScribbleTrainTask):
    """Weak-Net recipe (see the module docstring).

    Args:
        points_tag: datastore tag of the surface points.
        reconstruction_weight: ``lambda``.
        boundary_mm: ``d``; low_weight: ``W`` away from the boundaries.
        reconstructor_features: ``BasicUNet`` features of ``g``.
    """

    dense_targets = True  # the templates are dense masks

    def __init__(
        self,
        *args,
        points_tag: str = "points",
        reconstruction_weight: float = 1.0,
        boundary_mm: float = 5.0,
        low_weight: float = 0.1,
        reconstructor_features=(8, 8, 16, 32, 64, 8),
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.points_tag = points_tag
        self.reconstruction_weight, self.boundary_mm, self.low_weight = reconstruction_weight, boundary_mm, low_weight
        self.reconstructor_features = tuple(reconstructor_features)
        self._reconstructor = None

    def add_target(self, datastore, item) -> bool:
        """The volume's template (written to ``model/weaknet/templates``) when it has points."""
        image_id = item["id"]
        label_id = datastore.get_label_by_image_id(image_id, self.points_tag)
        if not label_id:
            return False
        label = LoadImage(image_only=True)(datastore.get_label_uri(label_id, self.points_tag))
        info = datastore.get_label_info(label_id, self.points_tag)
        try:
            points = points_of(np.asarray(label), info, self.convention)
        except ValueError as e:
            raise RequestError(f"surface points of {image_id!r}: {e}") from None
        template = template_labels(points, tuple(label.shape), read_spacing(item["image"]))
        item["label"] = write_nifti(
            os.path.join(self._model_dir, "templates", f"{image_id}.nii.gz"),
            template.astype(np.uint8),
            np.asarray(label.affine),
        )
        return True

    def missing_targets_message(self) -> str:
        return (
            f"no volume in the datastore has surface points under tag '{self.points_tag}': "
            f"click at least 4 points per structure and save them first"
        )

    def recipe_transforms(self, context):
        return [
            TemplateWeightsd(
                "label", self.convention, context.request["target_spacing"], self.boundary_mm, self.low_weight
            )
        ]

    def extra_batch_keys(self, context):
        return ["weight"]

    def optimizer(self, context):
        """One optimiser for the segmenter and the reconstructor ``g`` (created here, per run)."""
        self._reconstructor = BasicUNet(
            spatial_dims=3,
            in_channels=self.convention.num_classes,
            out_channels=1,
            features=self.reconstructor_features,
        ).to(context.device)
        r = context.request
        params = list(context.network.parameters()) + list(self._reconstructor.parameters())
        return torch.optim.AdamW(params, lr=float(r["learning_rate"]), weight_decay=float(r.get("weight_decay", 1e-4)))

    def loss_function(self, context):
        return torch.nn.ModuleDict(
            {"ce": PartialCrossEntropyLoss(self.convention), "mse": WeightedReconstructionLoss()}
        )

    def compute_loss(self, engine, outputs, batch):
        logits = final_logits(outputs)
        self._reconstructor.train()
        reconstruction = self._reconstructor(torch.softmax(logits.float(), dim=1))
        ce = engine.loss_function["ce"](logits, batch["label"])
        mse = engine.loss_function["mse"](reconstruction, batch["image"], batch["weight"])
        return {"loss": ce + self.reconstruction_weight * mse, "ce": ce, "mse": mse}
