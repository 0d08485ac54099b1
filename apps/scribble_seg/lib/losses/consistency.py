"""Consistency losses of CycleMix / ExMod / ZScribbleSeg (reference section 2.3-2.4), on softmax
probabilities ``(B, C, H, W)``; the cosine is taken over classes, per pixel.

* **global** (mix invariance): the prediction of the mixed image against the same mix of the two
  predictions, outside the occlusion ``M``::

      L_global = 1 - mean_i M_i * cos(p(x_mix)_i, m_i p(x_a)_i + (1 - m_i) p(x_b)_i)

  (the papers average over all pixels with the occluded ones contributing 0; so does this);
* **local** (integrity, CycleMix/ExMod): the prediction against the one-hot of its largest
  connected component per class, ``L_local = 1 - mean_i cos(p_i, onehot(LCC(argmax p))_i)``;
* **local, ZScribbleSeg's variant**: cross-entropy against that one-hot on the unannotated
  pixels only, ``mean_i (1 - a_i) * -log p_{LCC(i)}(i)``.

The largest component is taken of the whole foreground first, then of each class inside it
(4-connectivity, per slice), as in CycleMix's code.
"""

import numpy as np
import torch
import torch.nn.functional as F

from lib.scribbles.components import largest_object_labels


def largest_component_labels(probabilities: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` labels: argmax, then only the largest connected foreground blob and, within
    it, the largest component of each class (the rest background)."""
    labels = probabilities.argmax(dim=1).cpu().numpy()
    out = np.stack([largest_object_labels(lab) for lab in labels])
    return torch.as_tensor(out, device=probabilities.device)


def global_consistency(
    p_mix: torch.Tensor, p_a: torch.Tensor, p_b: torch.Tensor, mix_mask: torch.Tensor, kept: torch.Tensor
) -> torch.Tensor:
    """``L_global`` (see the module docstring); masks ``(B, 1, H, W)``."""
    target = mix_mask * p_a + (1.0 - mix_mask) * p_b
    cos = F.cosine_similarity(p_mix, target, dim=1, eps=1e-8)
    return 1.0 - (kept[:, 0] * cos).mean()


def local_consistency(probabilities: torch.Tensor) -> torch.Tensor:
    """``L_local`` (CycleMix/ExMod integrity)."""
    target = F.one_hot(largest_component_labels(probabilities.detach()), probabilities.shape[1])
    cos = F.cosine_similarity(probabilities, target.permute(0, 3, 1, 2).float(), dim=1, eps=1e-8)
    return 1.0 - cos.mean()


def local_cross_entropy(probabilities: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """ZScribbleSeg's integrity loss: CE against the LCC labels on unannotated pixels ``(B, H, W)``."""
    target = largest_component_labels(probabilities.detach())
    logp = torch.log(probabilities.clamp_min(1e-12)).gather(1, target[:, None]).squeeze(1)
    return -(logp * (~annotated.bool())).mean()
