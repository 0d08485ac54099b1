"""Monte-Carlo dropout epistemic uncertainty of a segmentation (Gal & Ghahramani, ICML 2016;
BALD, Houlsby et al. 2011). Pure torch / numpy: no MONAI Label here.

With ``T`` stochastic passes (dropout on, batch norm frozen) giving ``p_t(c | x_i)``::

    p_bar(c | x_i) = mean_t p_t(c | x_i)
    entropy_i      = H[p_bar]            = -sum_c p_bar log p_bar           (total uncertainty)
    mutual_info_i  = H[p_bar] - mean_t H[p_t]                               (epistemic part, BALD)

and the volume's score is the mean of the chosen map over the **predicted foreground**
(``argmax p_bar != background``) -- background voxels far from any structure would otherwise
drown the signal -- or over all voxels when nothing is predicted (an unseen kind of image often
yields no confident foreground at all, which must not read as "certain").

Since only the foreground counts, :func:`foreground_crop_score` runs the ``T`` stochastic passes
on the foreground's bounding box alone: one deterministic pass (dropout off) over the whole volume
predicts the foreground, its box grown by a margin (the network's context at the box's edge) is
cropped, and the passes see only the crop. For a structure filling a tenth of the field of view
that makes each pass about ten times cheaper.

Passes are batched (``batch`` copies per forward; :func:`passes_per_forward` picks it per device)
and reduced as running sums, so memory does not grow with ``T``. With a ``seed`` the dropout masks
are drawn from it (the global random state is restored afterwards): the same weights and volume
give the same maps, so a ranking of volumes is reproducible.
"""

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from lib.networks import seeded_random_state
from lib.scribbles.convention import BACKGROUND_CLASS

METRICS = ("entropy", "mutual_information")


def enable_mc_dropout(network: torch.nn.Module) -> torch.nn.Module:
    """Eval mode (frozen batch norm) with every dropout layer sampling."""
    network.eval()
    for m in network.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)):
            m.train()
    return network


def passes_per_forward(device, batch: Optional[int] = None) -> int:
    """Copies of the volume per MC-dropout forward: ``batch`` when given, else 4 on a GPU and 1 on
    the CPU, where batching copies is slower than one copy at a time."""
    if batch is not None:
        return max(1, int(batch))
    return 4 if torch.device(device).type == "cuda" else 1


@torch.no_grad()
def mc_dropout_maps(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    passes: int = 20,
    batch: int = 4,
    logit_moments: bool = False,
    seed: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """Mean probabilities, entropy and mutual information maps of ``passes`` stochastic passes.

    Args:
        logits_fn: ``(B, 1, H, W, D) -> (B, C, H, W, D)`` logits, dropout active.
        x: ``(1, 1, H, W, D)`` input.
        passes: ``T``.
        batch: copies of ``x`` per forward.
        logit_moments: also return the per-class mean and unbiased variance of the logits over the
            passes (what Can et al.'s Welch test needs; accumulated as sums, float64).
        seed: draw the dropout masks from this seed (``None``: from the global random state).

    Returns:
        ``{"probabilities": (C, H, W, D), "entropy": (H, W, D), "mutual_information": (H, W, D)}``,
        plus ``"logit_mean"`` and ``"logit_var"`` ``(C, H, W, D)`` with ``logit_moments``.
    """
    if passes < 2:
        raise ValueError(f"MC dropout needs at least 2 passes, got {passes}")
    sums: Dict[str, torch.Tensor] = {}

    def add(key, value):
        sums[key] = value if key not in sums else sums[key] + value

    done = 0
    with seeded_random_state(seed):
        while done < passes:
            n = min(batch, passes - done)
            z = logits_fn(x.expand(n, *x.shape[1:])).float()
            p = torch.softmax(z, dim=1)
            add("p", p.sum(0))
            add("h", -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1).sum(0))
            if logit_moments:
                z = z.double()
                add("z", z.sum(0))
                add("z2", (z * z).sum(0))
            done += n
    p_bar = sums["p"] / passes
    entropy = -(p_bar * torch.log(p_bar.clamp_min(1e-12))).sum(dim=0)
    out = {
        "probabilities": p_bar,
        "entropy": entropy,
        "mutual_information": (entropy - sums["h"] / passes).clamp_min(0),
    }
    if logit_moments:
        mean = sums["z"] / passes
        out["logit_mean"] = mean.float()
        out["logit_var"] = ((sums["z2"] - passes * mean * mean) / (passes - 1)).clamp_min(0).float()
    return out


def volume_score(maps: Dict[str, torch.Tensor], metric: str = "mutual_information") -> Dict[str, float]:
    """Mean of each map over the predicted foreground (all voxels if none); ``score`` = ``metric``'s."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    foreground = maps["probabilities"].argmax(0) != BACKGROUND_CLASS
    region = foreground if bool(foreground.any()) else torch.ones_like(foreground)
    out = {m: float(maps[m][region].mean()) for m in METRICS}
    out["foreground_fraction"] = float(foreground.float().mean())
    out["score"] = out[metric]
    return out


def foreground_box(
    foreground: torch.Tensor, margin: Sequence[int], divisor: Sequence[int] = (1, 1, 1)
) -> Optional[Tuple[slice, slice, slice]]:
    """Bounding box of ``foreground`` ``(H, W, D)`` grown by ``margin`` voxels per axis and side,
    then widened (inside the volume, as evenly as it can) to a multiple of ``divisor`` per axis so
    the network pads nothing; ``None`` when nothing is foreground."""
    if not bool(foreground.any()):
        return None
    box = []
    for axis, (m, d) in enumerate(zip(margin, divisor)):
        other = tuple(a for a in range(foreground.ndim) if a != axis)
        idx = torch.nonzero(foreground.any(dim=other)).flatten()
        n = foreground.shape[axis]
        lo, hi = max(0, int(idx[0]) - int(m)), min(n, int(idx[-1]) + 1 + int(m))
        extra = min(n, -(-(hi - lo) // int(d)) * int(d)) - (hi - lo)
        up = min(n - hi, extra - extra // 2)
        down = extra - up
        if down > lo:
            up, down = up + down - lo, lo
        lo, hi = lo - down, hi + up
        box.append(slice(lo, hi))
    return tuple(box)


@torch.no_grad()
def foreground_crop_score(
    network: torch.nn.Module,
    x: torch.Tensor,
    passes: int = 6,
    batch: int = 1,
    metric: str = "mutual_information",
    margin: Sequence[int] = (8, 8, 2),
    divisor: Sequence[int] = (1, 1, 1),
    seed: Optional[int] = None,
    logits: Callable = lambda output: output,
) -> Dict[str, float]:
    """:func:`volume_score` of ``passes`` MC-dropout passes run on the predicted foreground's box.

    Args:
        network: the segmentation network (its dropout and batch-norm modes are set here).
        x: ``(1, 1, H, W, D)`` input.
        passes, batch, seed: as :func:`mc_dropout_maps`.
        metric: the map that makes ``score``.
        margin: voxels added around the foreground box per axis (H, W, D) and side.
        divisor: box sizes are rounded up to multiples of it (:func:`lib.networks.size_divisor`).
        logits: network output -> ``(B, C, H, W, D)`` logits.

    Returns:
        :func:`volume_score`'s dict, with ``foreground_fraction`` of the whole volume (from the
        passes inside the box) and ``box_fraction``, the share of the volume the passes ran on.
    """
    network.eval()
    foreground = logits(network(x))[0].argmax(0) != BACKGROUND_CLASS
    box = foreground_box(foreground, margin, divisor)
    crop = x if box is None else x[(slice(None), slice(None)) + box]
    enable_mc_dropout(network)
    maps = mc_dropout_maps(lambda b: logits(network(b)), crop, passes, batch, seed=seed)
    info = volume_score(maps, metric)
    share = crop[0, 0].numel() / x[0, 0].numel()
    info["foreground_fraction"] *= share
    info["box_fraction"] = share
    return info


def intensity_features(image: np.ndarray, bins: int = 32) -> np.ndarray:
    """A volume's appearance as the histogram of its z-scored intensities in [-3, 3] (unit norm),
    for the diversity term of the strategy."""
    image = np.asarray(image, dtype=np.float32)
    z = (image - image.mean()) / max(float(image.std()), 1e-6)
    hist, _ = np.histogram(np.clip(z, -3, 3), bins=bins, range=(-3, 3))
    hist = hist.astype(np.float64)
    return hist / max(float(np.linalg.norm(hist)), 1e-12)
