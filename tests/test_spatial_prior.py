"""ZScribbleSeg's EM mixture ratios and spatial-prior loss."""

import numpy as np
import pytest
import torch

from lib.losses.spatial_prior import (
    em_mixture_ratios,
    plausible_mixture_ratios,
    scribble_priors,
    spatial_affinity,
    spatial_prior_loss,
)


def test_em_recovers_known_mixture_ratios_within_0_02():
    rng = np.random.default_rng(0)
    means = np.array([0.0, 2.0, 4.0])
    pi0 = np.array([0.6, 0.2, 0.2])  # what the scribbles taught the network
    truth = np.array([0.3, 0.5, 0.2])  # what the unannotated voxels really hold
    labels = rng.choice(3, size=200_000, p=truth)
    x = rng.normal(means[labels], 1.0)
    likelihood = np.exp(-((x[:, None] - means[None]) ** 2) / 2)
    posterior = pi0 * likelihood
    posterior /= posterior.sum(1, keepdims=True)  # Bayes under the scribbles' priors
    est = em_mixture_ratios(torch.as_tensor(posterior), torch.as_tensor(pi0)).numpy()
    assert np.abs(est - truth).max() < 0.02, est
    assert np.abs(posterior.mean(0) - truth).max() > 0.05  # the naive mean is biased toward pi0


def test_em_gives_absent_classes_zero_and_priors_count_annotated_voxels():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    est = em_mixture_ratios(p, torch.tensor([0.5, 0.5, 0.0]))
    assert est[2] == 0 and est.sum() == pytest.approx(1.0)
    targets = torch.tensor([0, 1, 1, 2, 0])
    annotated = torch.tensor([True, True, True, False, False])
    assert scribble_priors(targets, annotated, 3).tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])


def _two_regions(h=24, w=24):
    image = torch.zeros(1, 1, h, w)
    image[..., :, w // 2 :] = 1.0
    onehot = torch.zeros(1, 2, h, w)
    onehot[:, 0, :, : w // 2] = 1
    onehot[:, 1, :, w // 2 :] = 1
    return image, onehot


def test_prior_loss_is_zero_when_predictions_agree_and_positive_with_gradients_otherwise():
    image, onehot = _two_regions()
    unannotated = torch.ones(1, 24, 24, dtype=torch.bool)
    pi = torch.tensor([0.5, 0.5])
    agree = spatial_prior_loss(onehot, image, unannotated, pi, (1.0, 1.0), radius=3)
    assert float(agree) == pytest.approx(0.0, abs=1e-6)
    wrong = onehot.clone()
    wrong[..., :6, :12] = torch.tensor([0.3, 0.7])[:, None, None]  # a patch of the left region votes for class 1
    wrong.requires_grad_(True)
    loss = spatial_prior_loss(wrong, image, unannotated, pi, (1.0, 1.0), radius=3)
    assert float(loss.detach()) > 0.01
    loss.backward()
    assert wrong.grad is not None and float(wrong.grad.abs().sum()) > 0


def test_affinity_follows_intensity_edges_and_spacing():
    image, onehot = _two_regions()
    s = spatial_affinity(onehot, image, (1.0, 1.0), sigma_xy_mm=6.0, sigma_intensity=0.1, radius=4)
    # a class-0 voxel next to the edge gathers support only from its own side
    assert float(s[0, 1, 5, 11]) == 0.0 and float(s[0, 0, 5, 11]) > 0
    coarse = spatial_affinity(onehot, image, (3.0, 3.0), radius=4)
    assert float(coarse[0, 0, 12, 5]) < float(s[0, 0, 12, 5])  # farther neighbours in mm weigh less


def test_a_diverged_em_estimate_falls_back_to_the_scribble_frequencies():
    """A network that over-calls a rare class on the unannotated voxels (20 % RV where the scribbles
    say 3 %, as after 250 iterations on the phantoms) sends the EM to background ~ 0; that
    estimate must not reach the prior, a calibrated one must."""
    pi0 = torch.tensor([0.90, 0.03, 0.04, 0.03])
    rng = np.random.default_rng(0)
    over = torch.as_tensor(rng.dirichlet([7.0, 0.5, 0.6, 2.0], size=4000), dtype=torch.float32)  # mean RV ~0.2
    diverged = em_mixture_ratios(over, pi0)
    assert float(diverged[0]) < 0.2  # the runaway (measured ~0)
    pi, used = plausible_mixture_ratios(diverged, pi0)
    assert not used and torch.equal(pi, pi0)
    calibrated = torch.tensor([0.88, 0.05, 0.04, 0.03])
    pi, used = plausible_mixture_ratios(calibrated, pi0)
    assert used and torch.equal(pi, calibrated)
    assert plausible_mixture_ratios(torch.tensor([0.9, 0.1, 0.0]), torch.tensor([0.8, 0.2, 0.0]))[
        1
    ]  # absent class: 0 ok
    with pytest.raises(ValueError, match="max_ratio"):
        plausible_mixture_ratios(calibrated, pi0, max_ratio=0.5)
