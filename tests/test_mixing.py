"""Mix augmentation, occlusion and the consistency losses of CycleMix / ExMod / ZScribbleSeg."""

import numpy as np
import pytest
import torch

from lib.datasets.phantoms import make_cardiac_phantom
from lib.losses.consistency import global_consistency, largest_component_labels, local_consistency, local_cross_entropy
from lib.scribbles.convention import UNANNOTATED
from lib.scribbles.mixing import occlude, saliency_cutmix
from lib.scribbles.simulate import simulate_scribbles


def _slices(convention, seeds=(1, 2)):
    imgs, scrs = [], []
    for s in seeds:
        v = make_cardiac_phantom(s, shape=(96, 96, 8), spacing=(2.5, 2.5, 16.0))
        scr = simulate_scribbles(v.label, v.spacing, convention, seed=s)
        z = int(np.argmax((scr > 0).sum((0, 1))))
        imgs.append(torch.as_tensor(v.image[..., z])[None])
        scrs.append(torch.as_tensor(scr[..., z].astype(np.int64))[None])
    return torch.stack(imgs), torch.stack(scrs)


def test_mixing_keeps_each_scribble_of_its_source_or_unannotated_never_a_wrong_class(convention):
    torch.manual_seed(0)
    (xa, xb), (sa, sb) = (t.split(1) for t in _slices(convention))
    for _ in range(20):
        x, s, m = saliency_cutmix(xa, sa, xb, sb)
        src = torch.where(m.bool(), sa, sb)
        assert (s == src).all() and ((m == 0) | (m == 1)).all()
        assert (x == torch.where(m.bool(), xa, xb)).all()
        xo, so, kept = occlude(x, s, size=32)
        hole = kept == 0
        assert hole.sum() > 0 and (so[hole] == UNANNOTATED).all() and (xo[hole] == 0).all()
        assert (so[~hole] == s[~hole]).all()


def test_the_pasted_box_is_where_b_is_most_salient():
    xa, sa = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64, dtype=torch.long)
    xb = torch.zeros(1, 1, 64, 64)
    sal = torch.zeros(1, 1, 64, 64)
    sal[..., 40:50, 10:20] = 1.0
    torch.manual_seed(3)
    _, _, m = saliency_cutmix(xa, sa, xb, sa.clone(), saliency_b=sal)
    box = m[0, 0] == 0
    if box.sum() >= 100:  # a box at least as large as the salient square covers it
        assert box[40:50, 10:20].all()
    else:
        assert box.nonzero().float().mean(0).tolist() == pytest.approx([44.5, 14.5], abs=5)


def test_global_consistency_is_zero_for_an_equivariant_prediction_and_ignores_the_occlusion():
    torch.manual_seed(0)
    pa, pb = torch.softmax(torch.randn(2, 4, 16, 16), 1).split(1)
    m = torch.zeros(1, 1, 16, 16)
    m[..., :8] = 1
    pmix = m * pa + (1 - m) * pb
    kept = torch.ones(1, 1, 16, 16)
    assert float(global_consistency(pmix, pa, pb, m, kept)) == pytest.approx(0.0, abs=1e-6)
    other = torch.softmax(torch.randn(1, 4, 16, 16), 1)
    assert float(global_consistency(other, pa, pb, m, kept)) > 0.05
    kept[..., 4:12, 4:12] = 0
    wrong = pmix.clone()
    wrong[..., 4:12, 4:12] = other[..., 4:12, 4:12]
    assert float(global_consistency(wrong, pa, pb, m, kept)) == pytest.approx(float(1 - kept.mean()), abs=1e-6)


def test_local_losses_penalise_stray_islands_only():
    p = torch.full((1, 3, 20, 20), 0.0)
    p[:, 0] = 1.0
    p[:, 0, 5:12, 5:12], p[:, 1, 5:12, 5:12] = 0.0, 1.0  # the structure
    clean = p.clone()
    p[:, 0, 16:18, 16:18], p[:, 1, 16:18, 16:18] = 0.0, 1.0  # a stray island
    lab = largest_component_labels(p)
    assert (lab[0, 16:18, 16:18] == 0).all() and (lab[0, 5:12, 5:12] == 1).all()
    assert float(local_consistency(clean)) == pytest.approx(0.0, abs=1e-6)
    assert float(local_consistency(p)) == pytest.approx(4 / 400, abs=1e-6)
    annotated = torch.zeros(1, 20, 20, dtype=torch.bool)
    q = p.clamp(1e-3, 1)
    q = q / q.sum(1, keepdim=True)
    q.requires_grad_(True)
    loss = local_cross_entropy(q, annotated)
    loss.backward()
    assert float(loss.detach()) > 0 and float(q.grad[0, 0, 16, 16]) < 0  # pushes the island toward background
    annotated[0, 16:18, 16:18] = True
    assert float(local_cross_entropy(q, annotated).detach()) < float(loss.detach())


def test_largest_object_keeps_the_structure_on_the_organ_not_a_larger_false_blob():
    """What the per-class largest component gets wrong on the phantoms (accuracy.md)."""
    from lib.scribbles.components import largest_object_labels

    labels = np.zeros((40, 20, 3), np.int64)
    labels[2:12, 2:12] = 1  # LV
    labels[12:16, 2:12] = 3  # true RV, attached to the LV: 120 voxels
    labels[25:33, 2:12] = 3  # a false RV away from them, twice as large (240), smaller than the heart (420)
    labels[30, 19] = 1  # a stray LV voxel
    out = largest_object_labels(labels)
    assert (out[12:16, 2:12] == 3).all() and not out[25:33].any() and not out[30, 19].any()
    assert (out[2:12, 2:12] == 1).all() and np.unique(out).tolist() == [0, 1, 3]


def test_anchored_components_keep_what_borders_the_anchor_not_what_is_largest():
    """The phantoms' failure that ``object`` cannot fix: a false RV (the liver) larger than the
    true one and in the same foreground object, touching the myocardium far less."""
    from lib.scribbles.components import anchored_labels

    labels = np.zeros((40, 20, 3), np.int64)
    labels[2:14, 2:14] = 2  # myocardium (the anchor) ...
    labels[5:11, 5:11] = 1  # ... around the LV
    labels[2:14, 14:18] = 3  # true RV along the myocardium: 12 x 4 x 3 = 144 voxels, 36 bordering it
    labels[14:30, 2:10] = 3  # false RV below: 384 voxels, larger, bordering the myocardium at one row (24)
    labels[30:34, 2:10] = 1  # a false LV attached to the false RV (96), not touching the myocardium
    labels[36:39, 15:19] = 2  # a stray myocardium island (36)
    out = anchored_labels(labels, anchor=2)
    assert np.array_equal(out[:14], labels[:14]) and not out[14:].any()  # heart kept whole, nothing below
    # a class that nowhere touches the anchor keeps its largest component; no anchor: per class
    far = np.zeros((20, 20), np.int64)
    far[1:4, 1:4], far[10:16, 10:16], far[18, 18] = 2, 3, 3
    assert int((anchored_labels(far, anchor=2) == 3).sum()) == 36
    no_anchor = np.where(far == 2, 1, far)
    expected = no_anchor.copy()
    expected[18, 18] = 0
    assert np.array_equal(anchored_labels(no_anchor, anchor=2), expected)


def test_largest_component_conf_takes_its_modes_and_names_them_when_wrong():
    from lib.infers.segmentation import component_mode

    assert [component_mode(v) for v in ("true", "Class", "object", "false")] == ["class", "class", "object", None]
    labels = {"lv": 1, "myocardium": 2, "rv": 3}
    assert component_mode("Myocardium", labels) == 2 and component_mode("true", labels) == "class"
    with pytest.raises(ValueError, match="true, class, object, false"):
        component_mode("biggest")
    with pytest.raises(ValueError, match="false, lv, myocardium, rv .*'spleen'"):
        component_mode("spleen", labels)


def test_pce_all_pixel_mean_is_cyclemix_normalisation(convention):
    """CycleMix divides the partial CE by every pixel, ours by the annotated ones: the ratio is the
    annotated fraction, so the consistency terms weigh as in the paper only with ``all``."""
    from lib.losses import PartialCrossEntropyLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 16, 16)
    scribbles = torch.zeros(2, 1, 16, 16, dtype=torch.int64)
    scribbles[:, :, 4:6, 2:14] = 1
    scribbles[:, :, 12, :] = 4
    annotated = float((scribbles > 0).float().mean())
    per_annotated = PartialCrossEntropyLoss(convention)(logits, scribbles)
    per_pixel = PartialCrossEntropyLoss(convention, mean="all")(logits, scribbles)
    assert per_pixel.item() == pytest.approx(per_annotated.item() * annotated, rel=1e-5)
    assert 0.1 < annotated < 0.2
    with pytest.raises(ValueError, match="mean must be 'annotated' or 'all'"):
        PartialCrossEntropyLoss(convention, mean="voxels")


def test_outer_slices_become_background_strokes_for_the_2d_recipes(convention):
    """Strokes on slices 2..4 of 8: slices 0-1 and 5-7 become background strokes, the stroked
    range keeps exactly its strokes (and its unannotated voxels)."""
    from lib.transforms import BackgroundBeyondStrokesd

    label = torch.zeros(1, 6, 6, 8, dtype=torch.int64)
    label[0, 2, 2, 2], label[0, 3, 3, 4] = 1, convention.background_scribble_id
    out = BackgroundBeyondStrokesd("label", convention)({"label": label})["label"]
    bg = convention.background_scribble_id
    assert out.shape == label.shape and out.dtype == torch.int64
    assert (out[0, ..., [0, 1, 5, 6, 7]] == bg).all()
    assert torch.equal(out[0, ..., 2:5], label[0, ..., 2:5])
    untouched = BackgroundBeyondStrokesd("label", convention)({"label": torch.zeros_like(label)})["label"]
    assert int(untouched.abs().sum()) == 0  # no stroke at all: nothing to extend


@pytest.mark.parametrize("recipe", ["exmod", "zscribbleseg"])
def test_mix_recipes_take_the_stroke_less_slice_switches_from_conf(tmp_path, convention, recipe):
    import importlib

    from lib.transforms import BackgroundBeyondStrokesd

    cls = getattr(importlib.import_module(f"lib.configs.{recipe}"), recipe.capitalize())

    def trainer(conf):
        config = cls()
        config.init(recipe, str(tmp_path), {"unet2d_features": "[4, 8, 16, 32]", **conf}, None, convention=convention)
        return config.trainer()

    default = trainer({})
    assert default.recipe_transforms(None) == [] and default.pce_mean == "annotated"
    switched = trainer({"mix_outer_slices_background": "true", "mix_pce_mean": "all"})
    assert [type(t) for t in switched.recipe_transforms(None)] == [BackgroundBeyondStrokesd]
    assert switched.loss_function(None).mean == "all"
    with pytest.raises(ValueError, match="conf mix_pce_mean must be one of annotated, all, got 'pixels'"):
        trainer({"mix_pce_mean": "pixels"})
