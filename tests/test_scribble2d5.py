"""Scribble2D5's parts: label propagation, static boundary, losses and their gradients, the cache."""

import json

import numpy as np
import pytest
import torch

from lib.datasets.phantoms import make_cardiac_phantom
from lib.losses import ActiveBoundaryLoss, BoundaryLoss, PartialCrossEntropyLoss
from lib.networks import AttentionUNet2D5
from lib.scribbles.propagation import (
    PropagationParams,
    background_beyond_strokes,
    propagate,
    propagate_labels,
    static_boundary,
    supervoxels,
)
from lib.scribbles.simulate import scribble_coverage, simulate_scribbles
from lib.trainers.scribble2d5 import Scribble2D5TrainTask
from lib.transforms import PropagateScribblesd


def test_a_supervoxel_touched_by_two_classes_is_left_unannotated(convention):
    segments = np.zeros((6, 1, 1), np.int64)
    segments[:, 0, 0] = [1, 1, 2, 2, 3, 3]
    scribbles = np.zeros((6, 1, 1), np.int64)
    scribbles[0], scribbles[2], scribbles[3] = 1, 1, 2  # supervoxel 1: class 1 only; 2: classes 1 and 2; 3: none
    pseudo = propagate_labels(scribbles, segments, convention)
    assert pseudo[:, 0, 0].tolist() == [1, 1, 1, 2, 0, 0]  # strokes keep their class, the mixed one adds nothing


def test_background_strokes_propagate_like_a_class(convention):
    segments = np.array([1, 1, 2, 2]).reshape(4, 1, 1)
    scribbles = np.array([4, 0, 0, 3]).reshape(4, 1, 1)
    assert propagate_labels(scribbles, segments, convention).ravel().tolist() == [4, 4, 3, 3]


def test_propagation_on_a_phantom_is_mostly_right_and_much_denser(convention):
    p = make_cardiac_phantom(300)
    s = simulate_scribbles(p.label, p.spacing, convention, seed=300)
    pseudo = propagate_labels(s, supervoxels(p.image, p.spacing), convention)
    idx, ann = convention.targets(pseudo)
    assert (idx[ann] == p.label[ann]).mean() > 0.95  # measured 0.98
    before, after = scribble_coverage(s, p.label, convention), scribble_coverage(pseudo, p.label, convention)
    assert after["structures"] > 5 * before["structures"]  # measured 0.055 -> 0.70


def test_slices_beyond_the_stroked_range_become_background(convention):
    scribbles = np.zeros((3, 2, 6), np.int64)
    scribbles[0, 0, 2], scribbles[1, 1, 3] = 1, convention.background_scribble_id  # strokes in slices 2 and 3 only
    pseudo = scribbles.copy()
    pseudo[2, 1, 2] = 2  # a propagated label inside the range stays
    out = background_beyond_strokes(pseudo, scribbles, convention)
    bg = convention.background_scribble_id
    assert (out[..., [0, 1, 4, 5]] == bg).all()
    np.testing.assert_array_equal(out[..., 2:4], pseudo[..., 2:4])
    assert pseudo[0, 0, 0] == 0  # the input is not modified
    np.testing.assert_array_equal(background_beyond_strokes(pseudo, np.zeros_like(scribbles), convention), pseudo)
    along_h = background_beyond_strokes(
        np.moveaxis(pseudo, -1, 0), np.moveaxis(scribbles, -1, 0), convention, slice_axis=0
    )
    np.testing.assert_array_equal(along_h, np.moveaxis(out, -1, 0))


def test_outer_slices_background_is_right_on_a_phantom_and_off_by_default(convention):
    p = make_cardiac_phantom(301)
    s = simulate_scribbles(p.label, p.spacing, convention, seed=301)
    plain, _ = propagate(p.image, s, p.spacing, convention)
    outer, _ = propagate(p.image, s, p.spacing, convention, PropagationParams(outer_slices_background=True))
    empty = np.flatnonzero(~(p.label > 0).any(axis=(0, 1)))
    assert empty.size >= 2  # the phantom has slices beyond the base and the apex
    assert (outer[..., empty] == convention.background_scribble_id).all()  # and they are truly background
    assert not (plain[..., empty] == convention.background_scribble_id).all()
    inside = np.setdiff1d(np.arange(p.label.shape[-1]), empty)
    np.testing.assert_array_equal(outer[..., inside], plain[..., inside])


def test_static_boundary_marks_the_intensity_edges():
    image = np.zeros((40, 40, 3), np.float32)
    image[20:] = 1.0
    edges = static_boundary(image, (1.5, 1.5, 8.0))
    assert edges.shape == image.shape and set(np.unique(edges)) <= {0.0, 1.0}
    rows = np.flatnonzero(edges[:, 20, 1])
    assert len(rows) and np.all(np.abs(rows - 19.5) <= 1.5)
    sobel = static_boundary(image, (1.5, 1.5, 8.0), PropagationParams(edge_detector="sobel"))
    assert sobel[19:21, 20, 1].max() == pytest.approx(1.0) and sobel[5, 20, 1] < 0.01


def _soft_step(position, size=32):
    x = torch.arange(size).float()
    fg = torch.sigmoid((x - position) * 2.0)[:, None, None].expand(size, 8, 4)
    return torch.stack([1 - fg, fg])[None]


def test_active_boundary_loss_is_lowest_on_the_intensity_edge():
    image = torch.zeros(1, 1, 32, 8, 4)
    image[:, :, 16:] = 1.0
    abl = ActiveBoundaryLoss((1.5, 1.5, 8.0))
    losses = {pos: abl(_soft_step(pos), image).item() for pos in (8, 12, 16, 20, 24)}
    assert min(losses, key=losses.get) == 16, losses
    assert losses[12] > losses[16] < losses[20]


def test_active_boundary_surface_is_spacing_aware():
    u = torch.zeros(1, 2, 4, 4, 4)
    u[:, 1, ..., 2:] = 1.0  # a surface across slices (along z)
    u[:, 0] = 1 - u[:, 1]
    image = torch.zeros(1, 1, 4, 4, 4)
    thin = ActiveBoundaryLoss((1.0, 1.0, 1.0), lambda_in=0, lambda_out=0)(u, image)
    thick = ActiveBoundaryLoss((1.0, 1.0, 8.0), lambda_in=0, lambda_out=0)(u, image)
    assert thick < thin / 4  # a step across an 8 mm slice is a gentler slope


def test_boundary_loss_is_balanced_and_finite():
    f = BoundaryLoss()
    target = torch.zeros(1, 1, 8, 8, 2)
    target[..., 3, :, :] = 1.0
    assert torch.isfinite(f(torch.zeros_like(target), torch.zeros_like(target)))
    good, bad = 10 * (2 * target - 1), -10 * (2 * target - 1)
    assert f(good, target) < 0.01 < f(bad, target)


def test_every_term_back_propagates_into_the_network(convention):
    torch.manual_seed(0)
    net = AttentionUNet2D5(out_channels=4, dropout=0.0, aspp_rates=(2,))
    image = torch.randn(1, 1, 64, 64, 16)
    pseudo = torch.zeros(1, 1, 64, 64, 16, dtype=torch.long)
    pseudo[..., 20:30, 20:30, :] = 1
    pseudo[..., 40:50, 40:50, :] = 4
    boundary = torch.zeros(1, 1, 64, 64, 16)
    boundary[..., 20, 20:30, :] = 1.0
    batch = {"image": image, "label": pseudo, "pseudo": pseudo, "boundary": boundary}
    task = Scribble2D5TrainTask(
        model_dir="/tmp/unused", network=net, convention=convention, publish_path="", attention_supervision=1.0
    )

    class Engine:
        loss_function = torch.nn.ModuleDict(
            {
                "pce": PartialCrossEntropyLoss(convention),
                "boundary": BoundaryLoss(),
                "abl": ActiveBoundaryLoss((1.5, 1.5, 8.0)),
            }
        )

    terms = task.compute_loss(Engine(), net(image), batch)
    assert set(terms) == {"seg_initial", "seg_final", "boundary", "abl", "attention", "loss"}
    for name in ("seg_initial", "seg_final", "boundary", "abl", "attention"):
        net.zero_grad()
        task.compute_loss(Engine(), net(image), batch)[name].backward()
        grads = [p.grad.abs().sum().item() for p in net.encoders[0].parameters() if p.grad is not None]
        assert grads and sum(grads) > 0, f"{name} gives no gradient to the encoder"


def test_propagation_is_cached_on_disk_by_content(tmp_path, convention):
    p = make_cardiac_phantom(301, shape=(64, 64, 8))
    s = simulate_scribbles(p.label, p.spacing, convention, seed=1)
    data = {"image": torch.as_tensor(p.image)[None], "label": torch.as_tensor(s)[None]}
    first = PropagateScribblesd("label", convention, p.spacing, PropagationParams(), str(tmp_path))
    out1 = first(data)
    assert (first.hits, first.misses) == (0, 1)
    second = PropagateScribblesd(
        "label", convention, p.spacing, PropagationParams(), str(tmp_path)
    )  # e.g. the next run
    out2 = second(data)
    assert (second.hits, second.misses) == (1, 0)
    assert torch.equal(out1["pseudo"], out2["pseudo"]) and torch.allclose(out1["boundary"], out2["boundary"], atol=1e-3)
    changed = {"image": data["image"], "label": torch.where(data["label"] == 1, 0, data["label"])}
    second(changed)
    assert second.misses == 1  # other scribbles, other entry


def test_per_class_supervoxel_sizes_take_each_class_from_its_own_scale(convention):
    from lib.scribbles.propagation import propagate_multiscale

    p = make_cardiac_phantom(301)
    s = simulate_scribbles(p.label, p.spacing, convention, seed=301)
    coarse = propagate_labels(s, supervoxels(p.image, p.spacing), convention)
    assert np.array_equal(propagate_multiscale(p.image, s, p.spacing, convention), coarse)  # one size: unchanged

    params = PropagationParams(class_supervoxel_mm=(("myocardium", 6.0),))
    myo = convention.class_id("myocardium")
    fine = propagate_labels(s, supervoxels(p.image, p.spacing, PropagationParams(supervoxel_mm=6.0)), convention)
    mixed = propagate_multiscale(p.image, s, p.spacing, convention, params)
    strokes = convention.annotated(s)
    assert np.array_equal(mixed[strokes], s[strokes])
    grown = ~strokes
    assert np.all(fine[grown & (mixed == myo)] == myo)  # myocardium from the 6 mm supervoxels ...
    others = grown & convention.annotated(mixed) & (mixed != myo)
    assert np.all(mixed[others] == coarse[others])  # ... every other class from the 12 mm ones
    conflict = grown & (fine == myo) & convention.annotated(coarse) & (coarse != myo)
    assert conflict.sum() > 0 and np.all(mixed[conflict] == 0)  # claimed by two classes: left out

    def precision(pseudo):
        labelled = grown & (pseudo == myo)
        return (p.label[labelled] == myo).mean()

    assert precision(mixed) > precision(coarse) + 0.03  # measured 0.85 -> 0.98


def test_per_class_supervoxel_sizes_reject_unknown_classes_and_bad_sizes(convention):
    from lib.configs.scribble2d5 import _class_sizes

    assert _class_sizes('{"myocardium": 8, "background": 16}', convention) == (
        ("background", 16.0),
        ("myocardium", 8.0),
    )
    assert (
        PropagationParams(class_supervoxel_mm=(("background", 16.0),)).sizes(convention)[
            convention.background_scribble_id
        ]
        == 16.0
    )
    for bad in ('{"pancreas": 8}', '{"myocardium": 0}', "[8]", '{"myocardium": "x"}'):
        with pytest.raises(ValueError, match="not a label|class name -> mm"):
            _class_sizes(bad, convention)


def test_one_supervoxel_size_unless_the_dataset_names_thin_structures(convention):
    from lib.configs.scribble2d5 import _class_sizes
    from lib.datasets.phantoms import PHANTOM_CONF

    assert _class_sizes(None, convention) == () and _class_sizes({}, convention) == ()  # neutral: one size
    assert _class_sizes("{}", convention) == () and _class_sizes("", convention) == ()
    phantoms = PHANTOM_CONF["scribble2d5_class_supervoxel_mm"]  # the phantom studies' own conf
    assert _class_sizes(phantoms, convention) == (("myocardium", 6.0),)
    assert PropagationParams(class_supervoxel_mm=_class_sizes(phantoms, convention)).sizes(convention) == {
        1: 12.0,
        2: 6.0,
        3: 12.0,
        convention.background_scribble_id: 12.0,
    }


def test_outer_slices_background_is_a_conf_switch(tmp_path, convention):
    from lib.configs.scribble2d5 import Scribble2D5

    def params(conf):
        config = Scribble2D5()
        config.init("scribble2d5", str(tmp_path), conf, None, convention=convention)
        return config.trainer_kwargs()["propagation"]

    assert params({}).outer_slices_background is False
    assert params({"scribble2d5_outer_slices_background": "true"}).outer_slices_background is True
    with pytest.raises(ValueError, match="scribble2d5_outer_slices_background must be true or false"):
        params({"scribble2d5_outer_slices_background": "yes"})


def test_anatomy_comes_from_the_dataset_conf_not_from_the_label_names(tmp_path, convention):
    """Labels that include a myocardium get no cardiac behaviour unless the dataset's conf (the
    phantom studies' scribble_seg.json) or --conf asks for it."""
    from lib.conf import with_dataset_conf, write_dataset_conf
    from lib.configs.pce import Pce
    from lib.configs.scribble2d5 import Scribble2D5
    from lib.datasets.phantoms import PHANTOM_CONF

    def built(cls, conf):
        config = cls()
        config.init(cls.__name__.lower(), str(tmp_path), conf, None, convention=convention)
        return config.default_largest_component(), config.trainer_kwargs().get("propagation")

    largest, propagation = built(Scribble2D5, {"labels": json.dumps(convention.labels)})
    assert largest == "false" and propagation.class_supervoxel_mm == ()  # no anchor: every component kept
    studies = tmp_path / "studies"
    studies.mkdir()
    write_dataset_conf(str(studies), PHANTOM_CONF)
    conf = with_dataset_conf({"models": "all"}, str(studies))
    assert json.loads(conf["labels"]) == convention.labels and conf["anchor_structure"] == "myocardium"
    largest, propagation = built(Scribble2D5, conf)
    assert largest == "myocardium" and propagation.class_supervoxel_mm == (("myocardium", 6.0),)
    assert built(Pce, conf)[0] == "true"  # a recipe without anchored components keeps the per-class rule
    assert with_dataset_conf({"anchor_structure": ""}, str(studies))["anchor_structure"] == ""  # --conf wins
    same = with_dataset_conf({"labels": "lv, myocardium, rv"}, str(studies))  # the same labels written otherwise
    assert same["anchor_structure"] == "myocardium"
    other = with_dataset_conf({"labels": '{"lung": 1, "spine": 2}'}, str(studies))  # other labels: not its anatomy
    assert "anchor_structure" not in other and "scribble2d5_class_supervoxel_mm" not in other
    with pytest.raises(ValueError, match="conf anchor_structure: 'spine' is not a label"):
        built(Scribble2D5, {**conf, "anchor_structure": "spine"})
