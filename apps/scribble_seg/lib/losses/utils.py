import torch

from lib.scribbles.convention import ScribbleConvention


def check_logits_and_scribbles(
    logits: torch.Tensor, scribbles: torch.Tensor, convention: ScribbleConvention
) -> torch.Tensor:
    """Validate shapes; return the scribble map as ``(B, *spatial)`` int64."""
    if logits.ndim < 3:
        raise ValueError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
    if logits.shape[1] != convention.num_classes:
        raise ValueError(f"logits have {logits.shape[1]} channels; the convention has {convention.num_classes} classes")
    if scribbles.ndim == logits.ndim:
        if scribbles.shape[1] != 1:
            raise ValueError(f"scribbles must have one channel, got shape {tuple(scribbles.shape)}")
        scribbles = scribbles[:, 0]
    if scribbles.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"scribbles {tuple(scribbles.shape)} do not match logits {tuple(logits.shape)}")
    return scribbles.long()
