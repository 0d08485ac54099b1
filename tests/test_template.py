"""Weak-Net's annotation side: surface points in (label map or JSON, clear errors), a spherical
template deformed to them, rasterised at the image's spacing."""

import numpy as np
import pytest

from lib.datasets.phantoms import make_cardiac_phantom
from lib.scribbles.points import points_from_json, points_from_labelmap, template_labels
from lib.scribbles.template import fit_template, rasterise, surface_points

SPACING = np.array([1.0, 1.0, 2.0])
SHAPE = (64, 64, 32)


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _ellipsoid():
    g = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1) * SPACING
    return (((g - [32, 30, 30]) / [18, 12, 20]) ** 2).sum(-1) <= 1


def test_the_template_recovers_an_ellipsoid_from_50_points_and_improves_with_more():
    truth = _ellipsoid()
    dice = {
        n: _dice(rasterise(fit_template(surface_points(truth, SPACING, n) * SPACING), SHAPE, SPACING), truth)
        for n in (5, 10, 50)
    }
    assert dice[50] > 0.95, dice  # measured 0.967
    assert dice[5] < dice[10] < dice[50], dice


def test_a_sphere_is_recovered_exactly_from_its_points():
    truth = (
        ((np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1) * SPACING - [30, 32, 31]) / 14.0)
        ** 2
    ).sum(-1) <= 1
    t = fit_template(surface_points(truth, SPACING, 20) * SPACING)
    assert abs(t.radius - 13.5) < 1.0 and np.abs(t.centre - [30, 32, 31]).max() < 1.0
    assert _dice(rasterise(t, SHAPE, SPACING), truth) > 0.93


def test_nested_phantom_structures_come_out_as_a_ring_around_the_pool(convention):
    v = make_cardiac_phantom(3)
    lv, epi = v.label == 1, (v.label == 1) | (v.label == 2)
    points = {1: surface_points(lv, v.spacing, 50), 2: surface_points(epi, v.spacing, 50)}
    out = template_labels(points, v.label.shape, v.spacing)
    assert _dice(out == 1, lv) > 0.88  # measured 0.915
    assert _dice(out == 2, v.label == 2) > 0.6
    assert _dice(out > 0, epi) > 0.9


def test_points_from_a_labelmap_and_from_json(convention):
    label = np.zeros(SHAPE, np.uint8)
    pts = surface_points(_ellipsoid(), SPACING, 6)
    label[tuple(pts.T)] = 1
    got = points_from_labelmap(label, convention)
    assert list(got) == [1] and sorted(map(tuple, got[1])) == sorted(map(tuple, pts))
    as_json = points_from_json({"lv": pts.tolist(), "rv": (pts + 1).tolist()}, convention, SHAPE)
    assert set(as_json) == {1, 3} and (as_json[3] == pts + 1).all()


@pytest.mark.parametrize(
    "points, message",
    [
        ({"lv": [[1, 2, 3]] * 3}, "at least 4 surface points; got 3 for 'lv'"),
        ({"lv": [[1, 2, 3]] * 3 + [[64, 2, 3]]}, "outside the (64, 64, 32) volume"),
        ({"aorta": [[1, 2, 3]] * 4}, "unknown label name 'aorta'"),
        ({"lv": [[1, 2]] * 4}, "must be a list of [x, y, z] numbers"),
        ({}, "no surface points"),
        ({"background": [[1, 2, 3]] * 4}, "not background"),
    ],
)
def test_bad_points_are_refused_with_the_reason(convention, points, message):
    with pytest.raises(ValueError) as e:
        points_from_json(points, convention, SHAPE)
    assert message in str(e.value)


def test_bad_points_label_maps_are_refused(convention):
    label = np.zeros(SHAPE, np.uint8)
    label[1:3, 1, 1] = 2
    with pytest.raises(ValueError, match="got 2 for 'myocardium'"):
        points_from_labelmap(label, convention)
    label[5, 5, 5] = 9
    with pytest.raises(ValueError, match=r"values \[9\] that are not class ids"):
        points_from_labelmap(label, convention)
    with pytest.raises(ValueError, match="at least 4"):
        fit_template(np.zeros((3, 3)))


def test_boundary_weights_are_high_within_d_mm_of_the_template_boundary():
    from lib.scribbles.template import boundary_weights

    labels = np.zeros((40, 10, 10), np.int64)
    labels[20:] = 1
    w = boundary_weights(labels, (1.0, 1.0, 1.0), distance_mm=3.0, low=0.1)
    assert (w[17:23] == 1.0).all() and (w[:16] == 0.1).all() and (w[24:] == 0.1).all()
    coarse = boundary_weights(labels, (2.0, 1.0, 1.0), distance_mm=3.0, low=0.1)  # 2 mm voxels: fewer of them
    assert (coarse[18:22] == 1.0).all() and (coarse[:17] == 0.1).all()
    assert (boundary_weights(np.zeros((4, 4, 4)), (1, 1, 1), 3.0, 0.2) == 0.2).all()


def test_the_reconstruction_loss_gradient_reaches_the_segmenter(convention):
    import torch
    from monai.networks.nets import BasicUNet

    from lib.losses import WeightedReconstructionLoss
    from lib.networks import AttentionUNet2D5, final_logits

    torch.manual_seed(0)
    seg = AttentionUNet2D5(
        out_channels=convention.num_classes,
        channels=(8, 16, 24, 32),
        strides=((2, 2, 1), (2, 2, 1), (2, 2, 2)),
        aspp_rates=(2,),
    )
    rec = BasicUNet(spatial_dims=3, in_channels=convention.num_classes, out_channels=1, features=(4, 4, 8, 8, 16, 4))
    x = torch.randn(1, 1, 32, 32, 16)
    weights = torch.ones_like(x)
    loss = WeightedReconstructionLoss()(rec(torch.softmax(final_logits(seg(x)), 1)), x, weights)
    loss.backward()
    grads = [p.grad.abs().sum().item() for p in seg.parameters() if p.grad is not None]
    assert len(grads) > 0.9 * len(list(seg.parameters())) and sum(grads) > 0
    with pytest.raises(ValueError, match="same shape"):
        WeightedReconstructionLoss()(x, x, weights[..., :8])


def test_the_foreground_threshold_gamma():
    import torch

    from lib.infers.segmentation import threshold_foreground

    p = torch.tensor([[0.4, 0.7, 0.2], [0.3, 0.1, 0.1], [0.3, 0.2, 0.7]])[..., None, None]  # (C=3, 3 voxels)
    assert threshold_foreground(p, 0.5)[0, :, 0, 0].tolist() == [1, 0, 2]
    assert threshold_foreground(p, 0.65)[0, :, 0, 0].tolist() == [0, 0, 2]
