import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.losses import MaskedDiceLoss, PartialCrossEntropyLoss
from lib.metrics import dice_per_class, evaluate, hd95_per_class
from lib.scribbles.convention import ScribbleConvention


@pytest.fixture
def batch(convention):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, 3, generator=g, requires_grad=True)
    scribbles = torch.zeros(2, 1, 8, 8, 3, dtype=torch.long)
    scribbles[0, 0, 1:3, 1:3, 0] = 1
    scribbles[0, 0, 5, 5, 1] = 4  # background stroke
    scribbles[1, 0, 2, 2:6, 2] = 3
    return logits, scribbles


def test_pce_is_cross_entropy_over_annotated_voxels(convention, batch):
    logits, s = batch
    loss = PartialCrossEntropyLoss(convention)(logits, s)
    target, annotated = convention.targets(s[:, 0])
    expected = F.cross_entropy(logits.movedim(1, -1)[annotated], target[annotated])
    torch.testing.assert_close(loss, expected)


def test_pce_ignores_unannotated_voxels(convention, batch):
    logits, s = batch
    other = logits.detach().clone()
    other[..., 7, 7, :] += 100.0  # unannotated column
    f = PartialCrossEntropyLoss(convention)
    torch.testing.assert_close(f(logits, s), f(other, s))


def test_background_strokes_pull_towards_background(convention):
    logits = torch.zeros(1, 4, 1, 1, 1)
    logits[0, 0] = 5.0
    assert PartialCrossEntropyLoss(convention)(logits, torch.full((1, 1, 1, 1, 1), 4)) < 0.05
    assert PartialCrossEntropyLoss(convention)(logits, torch.full((1, 1, 1, 1, 1), 1)) > 4.0


@pytest.mark.parametrize("loss_cls", [PartialCrossEntropyLoss, MaskedDiceLoss])
def test_no_annotation_gives_zero_and_no_nan(convention, batch, loss_cls):
    logits, _ = batch
    loss = loss_cls(convention)(logits, torch.zeros(2, 1, 8, 8, 3, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_masked_dice_is_near_zero_for_a_perfect_prediction_and_ignores_unannotated(convention, batch):
    _, s = batch
    target, _ = convention.targets(s[:, 0])
    perfect = 50.0 * F.one_hot(target, 4).movedim(-1, 1).float()
    f = MaskedDiceLoss(convention)
    assert f(perfect, s).item() < 1e-3
    wrong_outside = perfect.clone()
    wrong_outside[:, :, 7, 7, :] = torch.tensor([0.0, 0.0, 50.0, 0.0])[:, None]  # unannotated: any class
    torch.testing.assert_close(f(wrong_outside, s), f(perfect, s))
    assert f(-perfect, s).item() > 0.5


def test_losses_back_propagate(convention, batch):
    logits, s = batch
    (PartialCrossEntropyLoss(convention)(logits, s) + MaskedDiceLoss(convention)(logits, s)).backward()
    assert logits.grad.abs().sum() > 0
    target, annotated = convention.targets(s[:, 0])
    grad_norm = logits.grad.abs().sum(dim=1)
    assert torch.count_nonzero(grad_norm[~annotated]) == 0  # unannotated voxels get no gradient at all
    assert torch.all(grad_norm[annotated] > 0)


def test_loss_argument_errors(convention, batch):
    logits, s = batch
    with pytest.raises(ValueError, match="4 classes"):
        PartialCrossEntropyLoss(convention)(logits[:, :3], s)
    with pytest.raises(ValueError, match="do not match"):
        MaskedDiceLoss(convention)(logits, s[..., :2])
    with pytest.raises(ValueError, match="weight needs 4"):
        PartialCrossEntropyLoss(convention, weight=torch.ones(3))


def test_dice_per_class_on_evaluated_voxels_and_nan_for_absent():
    pred = torch.tensor([0, 1, 1, 2, 2, 0])
    ref = torch.tensor([0, 1, 2, 2, 0, 0])
    d = dice_per_class(pred, ref, 4)
    assert d[0] == pytest.approx(2 / 3) and d[1] == pytest.approx(0.5) and math.isnan(d[2])
    mask = torch.tensor([True, True, False, True, False, True])
    d = dice_per_class(pred, ref, 4, evaluated=mask)
    assert d[0] == 1.0 and d[1] == 1.0


def test_hd95_in_millimetres(convention):
    a = np.zeros((20, 20, 4), np.uint8)
    b = np.zeros_like(a)
    a[5:10, 5:10, 1:3] = 1
    b[7:12, 5:10, 1:3] = 1  # shifted by 2 voxels along axis 0
    assert hd95_per_class(a, b, 2, spacing=(1.5, 1.5, 8.0))[0] == pytest.approx(3.0)
    metrics = evaluate(a, b, ScribbleConvention({"organ": 1}), (1.5, 1.5, 8.0))
    assert metrics["organ"]["dice"] == pytest.approx(0.6) and metrics["organ"]["precision"] == pytest.approx(0.6)
