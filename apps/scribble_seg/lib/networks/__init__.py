"""nn.Modules only. Segmentation networks return logits ``(B, C, H, W, D)`` or a dict whose
``"final"`` entry holds them; :func:`final_logits` gives the logits either way."""

from typing import Mapping, Tuple, Union

import torch

from .attention_unet2d5 import AttentionUNet2D5
from .initialise import seeded_copy, seeded_random_state
from .unet2d import ExModUNet, UNet2DBN


def final_logits(output: Union[torch.Tensor, Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """The segmentation logits of a network output (a tensor, or a dict with ``"final"``)."""
    return output["final"] if isinstance(output, Mapping) else output


def size_divisor(network: torch.nn.Module) -> Tuple[int, int, int]:
    """The factor each spatial axis (H, W, D) of an input should be a multiple of: the product of
    the network's down-sampling strides (a slice-wise 2D network's ``divisor`` applies in-plane)."""
    divisor = getattr(network, "divisor", 1)
    if isinstance(divisor, int):
        return (divisor, divisor, 1)
    return tuple(int(d) for d in divisor)
