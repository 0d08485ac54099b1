"""Mix augmentation and occlusion of images with their scribble maps (CycleMix / ExMod /
ZScribbleSeg; see ../shared/reference/scribble-methods.md sections 2.3-2.4).

The papers mix two slices with Puzzle Mix (block-wise masks chosen by a graph cut over saliency,
optimal transport of blocks). Here: a **saliency-guided CutMix** (documented simplification,
allowed by the issue): ``lambda ~ Beta(alpha, alpha)``; the box of area ``lambda * H * W`` holding
the most saliency of image ``b`` is pasted onto image ``a`` at the same place::

    mask m (1 = from a),  x_mix = m * x_a + (1 - m) * x_b,  s_mix = m * s_a + (1 - m) * s_b

where saliency is ``|dL/dx|`` of the supervised loss (or the intensity when no gradient is
given), smoothed; the box position maximises the box sum of saliency (an integral image, no
loop over positions). Scribbles are mixed with the **same** mask, so every voxel keeps the
scribble of the image it came from: a class, background, or unannotated -- never a wrong class.

:func:`mixup` is the plain alternative it is benchmarked against (Zhang et al., ICLR 2018):
``x_mix = lambda x_a + (1 - lambda) x_b`` with the constant mask ``m = lambda``; scribble maps
cannot be averaged, so its loss is ``lambda pCE(., s_a) + (1 - lambda) pCE(., s_b)``.

**Occlusion** (Cutout): a ``size x size`` square per slice is zeroed in the image and set to
``UNANNOTATED`` in the scribbles; the returned mask ``M`` (1 = kept) excludes it from the global
consistency loss. Shapes: images ``(B, 1, H, W)``, scribble maps ``(B, 1, H, W)``.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .convention import UNANNOTATED


def _best_box(saliency: torch.Tensor, bh: int, bw: int) -> Tuple[int, int]:
    """Top-left corner of the ``bh x bw`` box with the largest saliency sum in ``(H, W)``."""
    H, W = saliency.shape
    integral = F.pad(saliency.cumsum(0).cumsum(1), (1, 0, 1, 0))
    sums = integral[bh:, bw:] - integral[:-bh, bw:] - integral[bh:, :-bw] + integral[:-bh, :-bw]
    idx = int(torch.argmax(sums))
    return idx // sums.shape[1], idx % sums.shape[1]


def saliency_cutmix(
    image_a: torch.Tensor,
    scribbles_a: torch.Tensor,
    image_b: torch.Tensor,
    scribbles_b: torch.Tensor,
    saliency_b: Optional[torch.Tensor] = None,
    alpha: float = 0.5,
):
    """Mix ``b``'s most salient box into ``a`` (see the module docstring).

    Returns:
        ``(image, scribbles, mask)``: the mixed image and scribble map and ``m`` ``(B, 1, H, W)``
        (float, 1 where the voxel comes from ``a``).
    """
    if image_a.shape != image_b.shape or scribbles_a.shape != scribbles_b.shape:
        raise ValueError("the two images (and their scribble maps) must have the same shape")
    B, _, H, W = image_a.shape
    lam = torch.distributions.Beta(alpha, alpha).sample((B,))  # torch's global RNG (seeded by the trainer)
    sal = (saliency_b if saliency_b is not None else image_b).abs().float()
    sal = F.avg_pool2d(sal, 5, stride=1, padding=2)
    mask = torch.ones_like(image_a, dtype=torch.float32)
    for n in range(B):
        area = float(1.0 - lam[n]) * H * W  # the box is b's share
        bh = int(min(H, max(1, round(area**0.5 * (H / W) ** 0.5))))
        bw = int(min(W, max(1, round(area / bh))))
        y, x = _best_box(sal[n, 0], bh, bw)
        mask[n, :, y : y + bh, x : x + bw] = 0.0
    m = mask.bool()
    return (torch.where(m, image_a, image_b), torch.where(m, scribbles_a, scribbles_b), mask)


def mixup(image_a: torch.Tensor, image_b: torch.Tensor, alpha: float = 0.5):
    """Plain mixup, one ``lambda`` per batch (as in the original): ``(image, mask)`` with ``mask``
    ``(B, 1, H, W)`` filled with ``lambda``."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    mask = torch.full_like(image_a, lam, dtype=torch.float32)
    return mask * image_a + (1 - mask) * image_b, mask


def occlude(image: torch.Tensor, scribbles: torch.Tensor, size: int = 32, generator: Optional[torch.Generator] = None):
    """Cutout one ``size x size`` square per slice (centre uniform over the slice, clipped).

    Returns:
        ``(image, scribbles, kept)`` with ``kept`` ``(B, 1, H, W)`` float, 0 inside the square.
    """
    B, _, H, W = image.shape
    kept = torch.ones_like(image, dtype=torch.float32)
    for n in range(B):
        cy = int(torch.randint(0, H, (1,), generator=generator))
        cx = int(torch.randint(0, W, (1,), generator=generator))
        kept[n, :, max(0, cy - size // 2) : cy + size - size // 2, max(0, cx - size // 2) : cx + size - size // 2] = 0.0
    hole = ~kept.bool()
    return image.masked_fill(hole, 0.0), scribbles.masked_fill(hole, UNANNOTATED), kept
