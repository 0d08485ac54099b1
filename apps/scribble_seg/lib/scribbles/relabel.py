"""The E step of Can et al.'s recursive training: relabel a training volume from the current
network (Can et al., DLMIA 2018, sections 2.2-2.4; their ``predict_next_gt``).

Given the MC-dropout mean softmax ``p`` ``(C, H, W, D)`` and, per class, the mean ``m_k`` and
unbiased variance ``v_k`` of the *logits* over ``T`` stochastic passes:

1. **label**: ``c_hat = argmax_k p_k`` (the network), or the argmax of a dense CRF on ``p``
   with the seed areas clamped (:func:`lib.scribbles.crf.dense_crf`: 3D, or per slice as Can et al.);
2. **uncertainty** (optional): the runner-up ``c_2 = argmax_{k != c_hat} m_k`` and Welch's
   unequal-variance t-test between the ``T`` logits of ``c_hat`` and of ``c_2``::

       t  = (m_a - m_b) / sqrt(v_a / T + v_b / T)
       df = (v_a / T + v_b / T)^2 / ((v_a / T)^2 / (T - 1) + (v_b / T)^2 / (T - 1))
       p  = 2 * (1 - F_t(|t|; df))                                  (two-sided)

   a voxel with ``p >= alpha`` (0.05) becomes unknown (``NO_SEED``): the network cannot tell its
   two best classes apart. The authors looped over pixels in Python; here it is vectorised, and
   equals ``scipy.stats.ttest_ind(a, b, equal_var=False)`` on the samples (tested);
3. **seeds win**: voxels of the seed areas keep their seed class.
"""

from typing import Optional, Sequence

import numpy as np
from scipy.special import stdtr

from .convention import NO_SEED
from .crf import DenseCRFParams, dense_crf

DEFAULT_ALPHA = 0.05
MC_PASSES = 50
"""Dropout passes ``T`` of the E step's Welch test (Can et al.'s ``T``)."""


def welch_p_value(mean_a, var_a, mean_b, var_b, n: int) -> np.ndarray:
    """Two-sided p-value of Welch's t-test between two samples of ``n`` values each, from their
    means and unbiased variances (arrays of any matching shape). Identical samples (zero
    variances, equal means) give 1; different constants give 0."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    se_a, se_b = np.asarray(var_a, np.float64) / n, np.asarray(var_b, np.float64) / n
    se = se_a + se_b
    diff = np.abs(mean_a - mean_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / np.sqrt(se)
        df = se**2 / ((se_a**2 + se_b**2) / (n - 1))
        p = 2.0 * stdtr(df, -t)
    degenerate = se <= 0
    return np.where(degenerate, np.where(diff > 0, 0.0, 1.0), p)


def uncertain_voxels(
    label: np.ndarray, logit_mean: np.ndarray, logit_var: np.ndarray, passes: int, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """``(H, W, D)`` mask of voxels whose label and runner-up class are not significantly apart.

    Args:
        label: ``(H, W, D)`` class index (``c_hat``).
        logit_mean, logit_var: ``(C, H, W, D)`` per-class logit mean and unbiased variance.
        passes: ``T``.
        alpha: significance level.
    """
    if passes < 2:
        raise ValueError(f"the Welch test needs at least 2 passes, got {passes}")
    logit_mean, logit_var = np.asarray(logit_mean, np.float64), np.asarray(logit_var, np.float64)
    label = np.asarray(label, np.int64)[None]
    others = logit_mean.copy()
    np.put_along_axis(others, label, -np.inf, axis=0)
    runner_up = others.argmax(axis=0)[None]
    take = lambda a, idx: np.take_along_axis(a, idx, axis=0)[0]  # noqa: E731
    p = welch_p_value(
        take(logit_mean, label), take(logit_var, label), take(logit_mean, runner_up), take(logit_var, runner_up), passes
    )
    return p >= alpha


def relabel(
    probabilities: np.ndarray,
    seeds: np.ndarray,
    image: Optional[np.ndarray] = None,
    spacing: Optional[Sequence[float]] = None,
    crf: Optional[DenseCRFParams] = None,
    logit_mean: Optional[np.ndarray] = None,
    logit_var: Optional[np.ndarray] = None,
    passes: int = 0,
    alpha: float = DEFAULT_ALPHA,
    crf_per_slice: bool = False,
) -> np.ndarray:
    """New training labels of one volume (see the module docstring).

    Args:
        probabilities: ``(C, H, W, D)`` mean softmax of the network.
        seeds: ``(H, W, D)`` seed-area class index, ``NO_SEED`` elsewhere.
        image, spacing: the volume and its voxel size (mm), needed with ``crf``.
        crf: dense-CRF parameters, or ``None`` for the network's argmax.
        logit_mean, logit_var, passes: MC-dropout logit moments for the Welch test, or ``None``.
        alpha: significance level of the Welch test.
        crf_per_slice: Can et al.'s CRF, one per axial slice on z-scored intensities (see
            :func:`lib.scribbles.crf.dense_crf`), instead of one 3D CRF.

    Returns:
        ``(H, W, D)`` int64 class index, ``NO_SEED`` where unknown.
    """
    probabilities, seeds = np.asarray(probabilities), np.asarray(seeds)
    if probabilities.ndim != 4 or probabilities.shape[1:] != seeds.shape:
        raise ValueError(f"probabilities {probabilities.shape} must be (C,) + seeds {seeds.shape}")
    if crf is not None:
        if image is None or spacing is None:
            raise ValueError("the CRF relabelling needs the image and its spacing")
        probabilities = dense_crf(
            image, probabilities, spacing, seeds=seeds, params=crf, per_slice=crf_per_slice, zscore=crf_per_slice
        )
    label = probabilities.argmax(axis=0).astype(np.int64)
    if logit_mean is not None:
        label = np.where(uncertain_voxels(label, logit_mean, logit_var, passes, alpha), NO_SEED, label)
    return np.where(seeds != NO_SEED, seeds, label).astype(np.int64)
