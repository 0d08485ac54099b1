"""Weak-Net's boundary-weighted reconstruction loss (Weak-Net, section 3.1, Eq. 1).

A second network ``g`` reconstructs the image from the segmenter's output ``Y_hat``; the
reconstruction error, weighted toward the template's boundary, flows back into the segmenter and
pulls its boundaries onto image edges the coarse template misses::

    L     = L_ce(Y_hat, Y) + lambda * L_mse
    L_mse = mean_i W_i (X_i - g(softmax(Y_hat))_i)^2
    W_i   = 1 within d mm of a boundary of the template Y, w_low elsewhere
        (:func:`lib.scribbles.template.boundary_weights`)

(the paper sums over voxels; both terms are means here, which leaves their ratio, hence
``lambda``, unchanged).
"""

import torch
import torch.nn as nn


class WeightedReconstructionLoss(nn.Module):
    """``mean(W * (X - X_hat)^2)`` for ``(B, 1, H, W, D)`` image, reconstruction and weights."""

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if reconstruction.shape != image.shape or weights.shape != image.shape:
            raise ValueError(
                f"reconstruction {tuple(reconstruction.shape)}, image {tuple(image.shape)} and weights "
                f"{tuple(weights.shape)} must have the same shape"
            )
        return (weights * (image.float() - reconstruction.float()) ** 2).mean()
