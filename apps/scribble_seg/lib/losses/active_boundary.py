"""3D active boundary loss of Scribble2D5 (Chen et al., MICCAI 2022, §2.2), after the active
contour loss of Chen et al. (CVPR 2019, "Learning active contour models"), on **probabilities**.

For each foreground class ``k`` with soft mask ``u = softmax(x)_k`` on image ``v``::

    Surface   = mean_i sqrt( (d_x u / s_x)^2 + (d_y u / s_y)^2 + (d_z u / s_z)^2 + eps ) * s_min
    VolumeIn  = mean_i (c1 - v_i)^2 u_i,          c1 = sum u v / sum u           (inside mean)
    VolumeOut = mean_i (c2 - v_i)^2 (1 - u_i),    c2 = sum (1 - u) v / sum (1 - u) (outside mean)
    L_AB      = mean_k ( Surface + lambda1 VolumeIn + lambda2 VolumeOut ),  lambda1 = 1, lambda2 = 0.1

``d_a`` are forward differences, divided by the voxel size along the axis (mm) -- the released
code used isotropic voxel differences, so a step across an 8 mm slice counted like one across a
1.5 mm pixel -- and rescaled by the smallest spacing so that the surface term keeps its unit
scale. The released code also fed ``argmax`` (no gradient) and dropped the outside term; here
both region terms act on ``u`` and every term back-propagates. ``v`` is min-max normalised per
sample so that ``lambda`` does not depend on the intensity unit.
"""

from typing import Sequence

import torch
import torch.nn as nn

from lib.scribbles.convention import BACKGROUND_CLASS


class ActiveBoundaryLoss(nn.Module):
    """Args:
    spacing: voxel size in mm per spatial axis ``(s_x, s_y, s_z)``.
    lambda_in: ``lambda1``; lambda_out: ``lambda2``.
    eps: inside the square root of the surface term.
    """

    def __init__(self, spacing: Sequence[float], lambda_in: float = 1.0, lambda_out: float = 0.1, eps: float = 1e-8):
        super().__init__()
        spacing = [float(s) for s in spacing]
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing}")
        self.scale = [min(spacing) / s for s in spacing]
        self.lambda_in, self.lambda_out, self.eps = lambda_in, lambda_out, eps

    def forward(self, probabilities: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """
        Args:
            probabilities: ``(B, C, H, W, D)`` softmax output.
            image: ``(B, 1, H, W, D)`` intensities.
        """
        if (
            probabilities.ndim != 5
            or image.shape[0] != probabilities.shape[0]
            or image.shape[2:] != probabilities.shape[2:]
        ):
            raise ValueError(
                f"need (B, C, H, W, D) probabilities and a (B, 1, H, W, D) image, got "
                f"{tuple(probabilities.shape)} and {tuple(image.shape)}"
            )
        u = probabilities[:, [k for k in range(probabilities.shape[1]) if k != BACKGROUND_CLASS]].float()
        v = image.float()
        dims = tuple(range(2, 5))
        lo, hi = v.amin(dim=dims, keepdim=True), v.amax(dim=dims, keepdim=True)
        v = (v - lo) / (hi - lo).clamp_min(1e-6)

        h, w, d = u.shape[2:]
        dx = (u[:, :, 1:, :-1, :-1] - u[:, :, :-1, :-1, :-1]) * self.scale[0] if h > 1 else 0.0
        dy = (u[:, :, :-1, 1:, :-1] - u[:, :, :-1, :-1, :-1]) * self.scale[1] if w > 1 else 0.0
        dz = (u[:, :, :-1, :-1, 1:] - u[:, :, :-1, :-1, :-1]) * self.scale[2] if d > 1 else 0.0
        surface = torch.sqrt(dx**2 + dy**2 + dz**2 + self.eps).mean(dim=(0, 2, 3, 4))

        inside = u.sum(dim=dims, keepdim=True)
        outside = (1 - u).sum(dim=dims, keepdim=True)
        c1 = (u * v).sum(dim=dims, keepdim=True) / inside.clamp_min(1e-6)
        c2 = ((1 - u) * v).sum(dim=dims, keepdim=True) / outside.clamp_min(1e-6)
        volume_in = ((c1 - v) ** 2 * u).mean(dim=(0, 2, 3, 4))
        volume_out = ((c2 - v) ** 2 * (1 - u)).mean(dim=(0, 2, 3, 4))
        return (surface + self.lambda_in * volume_in + self.lambda_out * volume_out).mean()
