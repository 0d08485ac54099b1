"""Whole-volume inference when it fits, sliding windows otherwise; returns the ``final`` logits."""

from typing import Sequence

import numpy as np
import torch
from monai.inferers import Inferer, sliding_window_inference

from lib.networks import final_logits


class SegmentationInferer(Inferer):
    """Run a segmentation network on a ``(B, C, H, W, D)`` volume.

    Volumes of at most ``max_voxels`` voxels go through the network in one pass (our networks pad
    any size internally): a fully convolutional network needs no windows, and one pass is several
    times faster than overlapping windows. Larger volumes use Gaussian-weighted sliding windows
    of ``roi_size`` with ``overlap``.

    Args:
        roi_size: window size for large volumes.
        max_voxels: largest volume run in one pass.
        sw_batch_size: windows per forward.
        overlap: window overlap.
    """

    def __init__(
        self,
        roi_size: Sequence[int] = (192, 192, 32),
        max_voxels: int = 256 * 256 * 64,
        sw_batch_size: int = 1,
        overlap: float = 0.25,
    ):
        super().__init__()
        self.roi_size, self.max_voxels = tuple(roi_size), int(max_voxels)
        self.sw_batch_size, self.overlap = sw_batch_size, overlap

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        def run(x):
            return final_logits(network(x, *args, **kwargs))

        if hasattr(inputs, "as_tensor"):
            inputs = inputs.as_tensor()  # no MetaTensor bookkeeping in every layer
        if int(np.prod(inputs.shape[2:])) <= self.max_voxels:
            return run(inputs)
        return sliding_window_inference(
            inputs, self.roi_size, self.sw_batch_size, run, overlap=self.overlap, mode="gaussian"
        )
