"""ZScribbleSeg's EM mixture ratios and spatial-prior loss (Zhang & Zhuang, ZScribbleSeg; the
released ``estimator.py`` / ``spatial_function.py``, see ../shared/reference/scribble-methods.md
section 2.4 -- here the EM runs on the **unannotated** voxels, as the paper intends; the released
code used the annotated ones).

**Mixture ratios** (Saerens et al., Neural Computation 2002): a network trained on scribbles
learnt the class priors ``pi^0`` of the scribbles; the priors ``pi`` of the unannotated voxels
``U`` are re-estimated from its posteriors ``p``::

    pi^0_k     = mean_{i in A} 1[y_i = k]                         (A: annotated voxels)
    r_k(i)     = pi^(s)_k / pi^0_k * p_k(i)
    pi^(s+1)_k = mean_{i in U} r_k(i) / sum_j r_j(i)               until sum_k |pi^(s+1) - pi^(s)| < 1e-3

(classes without scribbles get ``pi = 0``).

The EM assumes posteriors calibrated to ``pi^0`` (Saerens et al.). Early in training a
scribble-trained network is far from that on the unannotated voxels -- on the phantoms, after 250
iterations it gives 12-24 % of them to the RV, whose true share is 1-3 %, and the EM then runs off
to ``pi_background ~ 0``, which would tell the prior loss that almost no unannotated voxel is
background. :func:`plausible_mixture_ratios` keeps an estimate only while every class stays within a
factor ``max_ratio`` of ``pi^0`` and otherwise falls back to ``pi^0`` (the trainer counts the
fallbacks in its stats). ZScribbleSeg's released code is spared this by running the EM on the
*annotated* voxels, where the network is fitted -- the pixel set the paper did not intend.

**Spatial prior**: a voxel is likely of class ``k`` when its neighbours of similar intensity
are (Gated-CRF kernel)::

    s_k(i)  = p_k(i) * sum_{j in W(i), j != i} K(i, j) p_k(j)
    K(i, j) = exp(-|x_i - x_j|^2 / (2 sigma_xy^2) - (I_i - I_j)^2 / (2 sigma_I^2))     (x in mm)

Over ``U``, the voxels whose ``s_k`` falls below its ``floor(|U| (1 - pi_k))``-th smallest value
are declared "not ``k``" (``N_k``), and the prior loss pushes their probability onto the other classes::

    L_prior = mean_i 1[i in union_k N_k] * -log(sum_{k : i not in N_k} p_k(i) + 1e-12)

The window sum is a depthwise convolution with an intensity-gated kernel, computed as the sum of
the ``(2r + 1)^2 - 1`` shifted whole-slice products (memory ``O(image)``, no per-voxel loop).
Inputs are 2D slices ``(B, C, H, W)``: ZScribbleSeg is a slice-wise 2D method.
"""

from typing import Sequence

import torch
import torch.nn.functional as F


def scribble_priors(targets: torch.Tensor, annotated: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``pi^0`` ``(C,)``: class frequencies among the annotated voxels (zeros if none)."""
    t = targets[annotated]
    if t.numel() == 0:
        return torch.zeros(num_classes, device=targets.device)
    return torch.bincount(t.long().flatten(), minlength=num_classes).float() / t.numel()


def em_mixture_ratios(
    probabilities: torch.Tensor, pi0: torch.Tensor, tol: float = 1e-3, max_iterations: int = 100
) -> torch.Tensor:
    """Saerens EM on posteriors ``(N, C)`` of unannotated voxels; returns ``pi`` ``(C,)``."""
    p = probabilities.detach().double()
    pi0 = pi0.double().to(p.device)
    present = pi0 > 0
    if p.shape[0] == 0 or not present.any():
        return pi0.float()
    pi = pi0.clone()
    for _ in range(max_iterations):
        r = torch.where(present, pi / pi0.clamp_min(1e-12), torch.zeros_like(pi)) * p
        new = (r / r.sum(dim=1, keepdim=True).clamp_min(1e-12)).mean(dim=0)
        done = float((new - pi).abs().sum()) < tol
        pi = new
        if done:
            break
    return pi.float()


def plausible_mixture_ratios(pi: torch.Tensor, pi0: torch.Tensor, max_ratio: float = 4.0):
    """``(pi, True)`` when every class's EM ratio is within ``[pi0_k / max_ratio, pi0_k * max_ratio]``
    (classes without scribbles: 0), else ``(pi0, False)`` -- the estimate of a diverged EM is not used."""
    if max_ratio < 1:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    pi0 = pi0.to(pi)
    ok = bool(((pi >= pi0 / max_ratio) & (pi <= pi0 * max_ratio)).all())
    return (pi, True) if ok else (pi0, False)


def spatial_affinity(
    probabilities: torch.Tensor,
    image: torch.Tensor,
    spacing: Sequence[float],
    sigma_xy_mm: float = 6.0,
    sigma_intensity: float = 0.1,
    radius: int = 8,
) -> torch.Tensor:
    """``s_k(i)`` ``(B, C, H, W)`` of probabilities ``(B, C, H, W)`` and image ``(B, 1, H, W)``."""
    B, C, H, W = probabilities.shape
    p = F.pad(probabilities, (radius,) * 4)
    img = F.pad(image, (radius,) * 4)
    acc = torch.zeros_like(probabilities)
    sy, sx = float(spacing[0]), float(spacing[1])
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            ys, xs = slice(radius + dy, radius + dy + H), slice(radius + dx, radius + dx + W)
            spatial = ((dy * sy) ** 2 + (dx * sx) ** 2) / (2 * sigma_xy_mm**2)
            gate = torch.exp(-spatial - (image - img[..., ys, xs]) ** 2 / (2 * sigma_intensity**2))
            acc = acc + gate * p[..., ys, xs]
    return probabilities * acc


def spatial_prior_loss(
    probabilities: torch.Tensor,
    image: torch.Tensor,
    unannotated: torch.Tensor,
    pi: torch.Tensor,
    spacing: Sequence[float],
    **kernel,
) -> torch.Tensor:
    """``L_prior`` for probabilities ``(B, C, H, W)``, image ``(B, 1, H, W)``, the unannotated mask
    ``(B, H, W)`` and mixture ratios ``pi`` ``(C,)``; differentiable in ``probabilities``."""
    s = spatial_affinity(probabilities, image, spacing, **kernel).detach()
    C = probabilities.shape[1]
    excluded = torch.zeros_like(probabilities, dtype=torch.bool)
    u = unannotated.bool()
    if not u.any():
        return probabilities.sum() * 0.0
    for k in range(C):
        values = s[:, k][u]
        level = float(1.0 - pi[k])
        if level <= 0:
            continue
        threshold = values.float().kthvalue(max(1, min(values.numel(), int(level * values.numel())))).values
        excluded[:, k] = (s[:, k] < threshold) & u
    any_excluded = excluded.any(dim=1)
    allowed = (probabilities * (~excluded)).sum(dim=1)
    loss = -torch.log(allowed + 1e-12) * any_excluded
    return loss.mean()
