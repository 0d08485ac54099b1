"""MC-dropout scoring (lib/activelearning/uncertainty.py) on its own: the maps are what the
formulas say, and a model trained on scribbles ranks volumes unlike its training data (dark-blood
contrast, i.e. another MR sequence) above volumes like it."""

import dataclasses

import numpy as np
import pytest
import torch

from lib.activelearning.uncertainty import (
    enable_mc_dropout,
    foreground_box,
    foreground_crop_score,
    intensity_features,
    mc_dropout_maps,
    volume_score,
)
from lib.datasets.phantoms import make_cardiac_phantom
from lib.losses.partial_ce import PartialCrossEntropyLoss
from lib.networks import final_logits
from lib.networks.attention_unet2d5 import AttentionUNet2D5
from lib.scribbles.simulate import simulate_scribbles

SHAPE, SPACING = (64, 64, 8), (3.5, 3.5, 16.0)


def _z(image):
    return torch.as_tensor((image - image.mean()) / image.std(), dtype=torch.float32)[None, None]


def test_without_dropout_mutual_information_is_zero_and_entropy_is_the_single_pass_one():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 3, 3, padding=1)
    x = torch.randn(1, 1, 8, 8, 4)
    maps = mc_dropout_maps(conv, x, passes=5, batch=2)
    p = torch.softmax(conv(x), 1)[0].detach()
    assert maps["probabilities"].shape == (3, 8, 8, 4) and maps["entropy"].shape == (8, 8, 4)
    assert torch.allclose(maps["probabilities"], p, atol=1e-6)
    assert torch.allclose(maps["entropy"], -(p * p.log()).sum(0), atol=1e-5)
    assert float(maps["mutual_information"].max()) < 1e-5
    with pytest.raises(ValueError, match="at least 2 passes"):
        mc_dropout_maps(conv, x, passes=1)


def test_dropout_passes_disagree_and_mutual_information_is_bounded_by_entropy():
    torch.manual_seed(0)
    net = enable_mc_dropout(
        torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.Dropout3d(0.5), torch.nn.Conv3d(8, 3, 1))
    )
    maps = mc_dropout_maps(net, torch.randn(1, 1, 8, 8, 4), passes=16, batch=4)
    mi, h = maps["mutual_information"], maps["entropy"]
    assert float(mi.mean()) > 1e-3
    assert bool((mi <= h + 1e-6).all()) and float(h.max()) <= np.log(3) + 1e-6


def test_seeded_passes_repeat_exactly_and_leave_the_global_random_state_alone():
    torch.manual_seed(0)
    net = enable_mc_dropout(
        torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.Dropout3d(0.5), torch.nn.Conv3d(8, 3, 1))
    )
    x = torch.randn(1, 1, 8, 8, 4)
    state = torch.get_rng_state()
    a, b = (mc_dropout_maps(net, x, passes=6, batch=2, seed=7) for _ in range(2))
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = mc_dropout_maps(net, x, passes=6, batch=2, seed=8)
    assert not torch.equal(a["mutual_information"], other["mutual_information"])


def test_volume_score_averages_over_the_predicted_foreground_or_everything_when_none():
    probs = torch.zeros(2, 4, 4, 1)
    probs[0] = 1.0
    probs[:, :2, :2] = torch.tensor([0.0, 1.0])[:, None, None, None]  # 4 foreground voxels
    mi = torch.zeros(4, 4, 1)
    mi[:2, :2] = 0.5
    maps = {"probabilities": probs, "entropy": mi * 2, "mutual_information": mi}
    out = volume_score(maps)
    assert out["score"] == pytest.approx(0.5) and out["foreground_fraction"] == pytest.approx(0.25)
    assert volume_score(maps, "entropy")["score"] == pytest.approx(1.0)
    probs[:] = torch.tensor([1.0, 0.0])[:, None, None, None]  # nothing predicted: all 16 voxels
    assert volume_score(maps)["score"] == pytest.approx(0.5 * 4 / 16)
    with pytest.raises(ValueError, match="metric must be one of"):
        volume_score(maps, "variance")


def test_intensity_features_are_unit_norm_and_tell_inverted_contrast_apart():
    v = make_cardiac_phantom(3, shape=SHAPE, spacing=SPACING)
    f, g = intensity_features(v.image), intensity_features(v.image.max() - v.image)
    h = intensity_features(make_cardiac_phantom(4, shape=SHAPE, spacing=SPACING).image)
    assert np.linalg.norm(f) == pytest.approx(1.0)
    assert float(f @ h) > float(f @ g) + 0.1


def test_foreground_box_grows_by_the_margin_to_a_multiple_of_the_divisor_inside_the_volume():
    f = torch.zeros(160, 160, 16, dtype=torch.bool)
    f[50:90, 60:95, 3:12] = True
    assert foreground_box(f, (8, 8, 2), (4, 4, 8)) == (slice(42, 98), slice(52, 104), slice(0, 16))
    f = torch.zeros(10, 10, 4, dtype=torch.bool)
    f[0:3, 8:10, 0] = True  # against the volume's edges: the box widens the other way
    assert foreground_box(f, (1, 1, 1), (4, 4, 4)) == (slice(0, 4), slice(6, 10), slice(0, 4))
    assert foreground_box(f, (0, 0, 0), (16, 16, 16)) == (slice(0, 10), slice(0, 10), slice(0, 4))
    assert foreground_box(torch.zeros(3, 3, 3, dtype=torch.bool), (1, 1, 1)) is None


def test_the_box_score_is_the_whole_volume_score_when_the_box_is_the_volume_and_runs_on_the_box_only():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 3, padding=1), torch.nn.Dropout(0.3))
    with torch.no_grad():  # background (class 0) wins except where the input is bright (class 1)
        net[0].weight.zero_()
        net[0].weight[1].fill_(1 / 27)
        net[0].bias.copy_(torch.tensor([3.0, 0.0, -3.0]))
    x = torch.randn(1, 1, 24, 24, 6)
    x[..., 8:14, 8:14, 2:4] += 40.0  # where class 1 wins: the only foreground
    whole = foreground_crop_score(net, x, passes=6, batch=2, margin=(24, 24, 6), seed=3)
    enable_mc_dropout(net)
    assert whole["score"] == pytest.approx(volume_score(mc_dropout_maps(net, x, 6, 2, seed=3))["score"])
    assert whole["box_fraction"] == 1.0
    shapes = []
    hook = net[0].register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[2:])))
    boxed = foreground_crop_score(net, x, passes=6, batch=2, margin=(2, 2, 1), seed=3)
    hook.remove()
    assert shapes[0] == (24, 24, 6) and set(shapes[1:]) == {(12, 12, 6)}, shapes  # one whole pass, then the box
    # the bright cube 8:14 x 8:14 x 2:4, grown one voxel by the 3x3x3 kernel, then by the margin
    assert boxed["box_fraction"] == pytest.approx(12 * 12 * 6 / (24 * 24 * 6))
    assert 0 < boxed["foreground_fraction"] <= boxed["box_fraction"]


@pytest.mark.parametrize("scorer", ["whole volume", "foreground box"])
def test_a_scribble_trained_model_is_most_uncertain_on_volumes_unlike_its_training_data(convention, scorer):
    """pCE on 4 scribbled bright-blood phantoms (150 iterations), then 8 MC-dropout passes on 4
    unseen bright-blood phantoms and the same 4 with dark-blood contrast (intensities inverted),
    over the whole volume or on the predicted foreground's box."""
    torch.manual_seed(0)
    train = [make_cardiac_phantom(s, shape=SHAPE, spacing=SPACING) for s in range(4)]
    x = torch.cat([_z(v.image) for v in train])
    y = torch.as_tensor(
        np.stack([simulate_scribbles(v.label, SPACING, convention, seed=i) for i, v in enumerate(train)])
    )[:, None].long()
    net = AttentionUNet2D5(
        channels=(8, 16, 24, 32), strides=((2, 2, 1), (2, 2, 1), (2, 2, 2)), dropout=0.2, aspp_rates=(2, 4)
    )
    opt, loss = torch.optim.Adam(net.parameters(), 3e-3), PartialCrossEntropyLoss(convention)
    net.train()
    for _ in range(150):
        idx = torch.randint(0, len(train), (2,))
        opt.zero_grad()
        loss(final_logits(net(x[idx])), y[idx]).backward()
        opt.step()
    enable_mc_dropout(net)

    def score(v):
        if scorer == "foreground box":
            return foreground_crop_score(
                net, _z(v.image), passes=8, batch=4, margin=(4, 4, 1), divisor=net.divisor, logits=final_logits
            )["score"]
        maps = mc_dropout_maps(lambda b: final_logits(net(b)), _z(v.image), passes=8, batch=4)
        return volume_score(maps)["score"]

    test = [make_cardiac_phantom(s, shape=SHAPE, spacing=SPACING) for s in range(10, 14)]
    like = np.array([score(v) for v in test])
    unlike = np.array([score(dataclasses.replace(v, image=v.image.max() - v.image)) for v in test])
    # every unusual volume outranks the typical one on average, and most of them outrank all typical ones
    assert unlike.min() > like.mean(), (like, unlike)
    assert unlike.mean() > 1.1 * like.mean(), (like, unlike)
    assert (unlike > like.max()).sum() >= 3, (like, unlike)


def test_passes_per_forward_batches_on_a_gpu_only_unless_asked():
    from lib.activelearning.uncertainty import passes_per_forward

    assert passes_per_forward("cpu") == 1  # 4 per forward measured 0.64x the speed on CPU (relabel.md)
    assert passes_per_forward(torch.device("cuda")) == 4
    assert passes_per_forward("cpu", 4) == 4 and passes_per_forward("cuda", 0) == 1
