"""Weak-Net's boundary-weighted reconstruction loss (Weak-Net, section 3.1, Eq. 1).

A second network ``g`` reconstructs the image from the segmenter's output ``Y_hat``; the
reconstruction error, weighted toward the template's boundary, flows back into the segmenter and
pulls its boundaries onto image edges the coarse template misses::

    L     = L_ce(Y_hat, Y) + lambda * L_mse
    L_mse = mean_i W_i (X_i - g(softmax(Y_hat))_i)^2
    W_i   = 1 within d mm of a boundary of the template Y, w_low elsewhere

(the paper sums over voxels; both terms are means here, which leaves their ratio, hence
``lambda``, unchanged).
"""

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from scipy import ndimage


def boundary_weights(labels: np.ndarray, spacing: Sequence[float], distance_mm: float, low: float) -> np.ndarray:
    """``W`` ``(H, W, D)`` float32: 1 within ``distance_mm`` of a voxel whose 6-neighbour has
    another class in ``labels`` (class indices), ``low`` elsewhere (``low`` everywhere if the
    volume holds one class)."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    for ax in range(labels.ndim):
        a = [slice(None)] * labels.ndim
        b = [slice(None)] * labels.ndim
        a[ax], b[ax] = slice(0, -1), slice(1, None)
        diff = labels[tuple(a)] != labels[tuple(b)]
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    if not edge.any():
        return np.full(labels.shape, low, dtype=np.float32)
    distance = ndimage.distance_transform_edt(~edge, sampling=[float(s) for s in spacing])
    return np.where(distance <= distance_mm, 1.0, low).astype(np.float32)


class WeightedReconstructionLoss(nn.Module):
    """``mean(W * (X - X_hat)^2)`` for ``(B, 1, H, W, D)`` image, reconstruction and weights."""

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if reconstruction.shape != image.shape or weights.shape != image.shape:
            raise ValueError(
                f"reconstruction {tuple(reconstruction.shape)}, image {tuple(image.shape)} and weights "
                f"{tuple(weights.shape)} must have the same shape"
            )
        return (weights * (image.float() - reconstruction.float()) ** 2).mean()
