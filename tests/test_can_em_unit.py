"""Can et al.'s pieces on their own: seed areas, the vectorised Welch test, the E step."""

import numpy as np
import pytest
import torch
from scipy.stats import ttest_ind

from lib.activelearning.uncertainty import mc_dropout_maps
from lib.datasets.phantoms import make_cardiac_phantom
from lib.scribbles.convention import BACKGROUND_CLASS, NO_SEED
from lib.scribbles.crf import DenseCRFParams
from lib.scribbles.relabel import relabel, uncertain_voxels, welch_p_value
from lib.scribbles.seed_areas import seed_areas
from lib.scribbles.simulate import simulate_scribbles

SHAPE, SPACING = (64, 64, 8), (3.5, 3.5, 16.0)


@pytest.fixture
def can_em_trainer(tmp_path, convention):
    """``conf -> trainer``: the ``can_em`` config initialised from ``conf``, as the server does."""
    from lib.configs.can_em import CanEm

    def trainer(conf):
        config = CanEm()
        config.init("can_em", str(tmp_path), conf, None, convention=convention)
        return config.trainer()

    return trainer


def test_welch_p_value_equals_scipy_on_the_samples():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(30, 50))
    b = rng.normal(rng.uniform(-1, 1, size=50), rng.uniform(0.2, 3.0, size=50), size=(30, 50))
    expected = ttest_ind(a, b, equal_var=False, axis=0).pvalue
    got = welch_p_value(a.mean(0), a.var(0, ddof=1), b.mean(0), b.var(0, ddof=1), 30)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert welch_p_value(1.0, 0.0, 1.0, 0.0, 10) == 1.0 and welch_p_value(2.0, 0.0, 1.0, 0.0, 10) == 0.0


def test_welch_flags_a_voxel_whose_two_best_classes_overlap_and_keeps_a_separated_one():
    rng = np.random.default_rng(1)
    T = 50
    z = np.zeros((T, 3, 2, 1, 1))
    same = rng.normal(2.0, 1.0, size=T)
    z[:, 1, 0], z[:, 2, 0] = same[:, None, None], rng.permutation(same)[:, None, None]  # identical distributions
    z[:, 1, 1], z[:, 2, 1] = rng.normal(4.0, 0.5, size=(T, 1, 1)), rng.normal(0.0, 0.5, size=(T, 1, 1))
    z[:, 0] = -5.0
    label = z.mean(0).argmax(0)
    flagged = uncertain_voxels(label, z.mean(0), z.var(0, ddof=1), T)
    assert flagged[0].all() and not flagged[1].any()


def test_mc_dropout_logit_moments_match_the_samples():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 6, 3, padding=1), torch.nn.Dropout3d(0.5), torch.nn.Conv3d(6, 3, 1))
    net.train()
    x = torch.randn(1, 1, 6, 6, 2)
    samples = []
    torch.manual_seed(1)
    with torch.no_grad():
        maps = mc_dropout_maps(
            lambda b: (samples.append(net(b)), samples[-1])[1], x, passes=10, batch=3, logit_moments=True
        )
    z = torch.cat(samples).double()
    assert z.shape[0] == 10
    torch.testing.assert_close(maps["logit_mean"].double(), z.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps["logit_var"].double(), z.var(0, unbiased=True), atol=1e-4, rtol=1e-4)


def test_seed_areas_grow_the_scribbles_precisely_and_keep_every_stroke(convention):
    v = make_cardiac_phantom(5, shape=SHAPE, spacing=SPACING)
    strokes = convention.seeds(simulate_scribbles(v.label, SPACING, convention, seed=0))
    grown = seed_areas(v.image, strokes, SPACING, convention.num_classes, tau=0.99)
    seeded = strokes != NO_SEED
    assert (grown[seeded] == strokes[seeded]).all()
    labelled = grown != NO_SEED
    assert labelled.sum() > 3 * seeded.sum()  # the walk grows the strokes a lot ...
    assert (grown[labelled] == v.label[labelled]).mean() > 0.97  # ... and is right where it is sure
    assert (seed_areas(v.image, strokes, SPACING, convention.num_classes, tau=0.0) != NO_SEED).all()
    with pytest.raises(ValueError, match="tau"):
        seed_areas(v.image, strokes, SPACING, convention.num_classes, tau=1.0)


def test_relabel_keeps_seeds_and_marks_uncertain_voxels_unknown(convention):
    v = make_cardiac_phantom(6, shape=SHAPE, spacing=SPACING)
    C = convention.num_classes
    rng = np.random.default_rng(0)
    probs = np.full((C,) + SHAPE, 0.05, np.float32)
    np.put_along_axis(probs, v.label[None].astype(np.int64), 0.85, axis=0)
    seeds = np.full(SHAPE, NO_SEED)
    seeds[30:34, 30:34, 4] = 2
    mean = np.log(probs).astype(np.float64)
    var = np.full_like(mean, 0.01)
    unsure = rng.random(SHAPE) < 0.2
    mean[:, unsure] = 0.0  # all classes tied there
    out = relabel(probs, seeds, logit_mean=mean, logit_var=var, passes=20)
    assert (out[seeds != NO_SEED] == 2).all()
    free = seeds == NO_SEED
    assert (out[free & unsure] == NO_SEED).all()
    assert (out[free & ~unsure] == v.label[free & ~unsure]).all()
    crf = relabel(probs, seeds, image=v.image, spacing=SPACING, crf=DenseCRFParams.can_et_al())
    assert (crf[seeds != NO_SEED] == 2).all() and (crf != NO_SEED).all()
    assert (crf == v.label).mean() > 0.95
    with pytest.raises(ValueError, match="needs the image"):
        relabel(probs, seeds, crf=DenseCRFParams.can_et_al())


def test_from_seeds_inverts_seeds(convention):
    rng = np.random.default_rng(0)
    seeds = rng.integers(-1, convention.num_classes, size=(5, 5, 3))
    assert (convention.seeds(convention.from_seeds(seeds)) == seeds).all()
    with pytest.raises(ValueError, match="neither class indices"):
        convention.from_seeds(np.array([7]))


def test_seed_areas_per_slice_stay_on_the_stroked_slices_and_equal_a_2d_walk(convention):
    """Can et al.'s walk: one 2D walk per stroked slice; a slice without strokes gets none."""
    v = make_cardiac_phantom(5, shape=SHAPE, spacing=SPACING)
    strokes = convention.seeds(simulate_scribbles(v.label, SPACING, convention, seed=0))
    keep = np.zeros(SHAPE[-1], bool)
    keep[[2, 5]] = True
    strokes[..., ~keep] = NO_SEED  # strokes on two slices only
    grown = seed_areas(v.image, strokes, SPACING, convention.num_classes, tau=0.99, per_slice=True)
    assert (grown[..., ~keep] == NO_SEED).all()
    alone = seed_areas(v.image[..., 5:6], strokes[..., 5:6], SPACING, convention.num_classes, tau=0.99)
    assert np.array_equal(grown[..., 5:6], alone)
    labelled = grown != NO_SEED
    assert (grown[labelled] == v.label[labelled]).mean() > 0.97
    walked = seed_areas(v.image, strokes, SPACING, convention.num_classes, tau=0.99)
    assert (walked[..., ~keep] != NO_SEED).any()  # the 3D walk reaches the slices between


def test_crf_per_slice_couples_no_slices_and_reads_z_scores(convention):
    """Per slice, a change in one slice's image leaves every other slice's answer as it was; with
    z-scores an affine change of the intensities changes nothing."""
    from lib.scribbles.crf import dense_crf

    v = make_cardiac_phantom(6, shape=SHAPE, spacing=SPACING)
    C = convention.num_classes
    probs = np.full((C,) + SHAPE, 0.1, np.float32)
    np.put_along_axis(probs, v.label[None].astype(np.int64), 0.7, axis=0)
    params = DenseCRFParams.can_et_al_slices()
    assert params.iterations == 100 and params.gaussian_weight == 10.0
    out = dense_crf(v.image, probs, SPACING, params=params, per_slice=True, zscore=True)
    changed = v.image.copy()
    changed[..., 3] = changed[..., 3][::-1]
    other = dense_crf(changed, probs, SPACING, params=params, per_slice=True, zscore=True)
    untouched = [z for z in range(SHAPE[-1]) if z != 3]
    assert np.allclose(out[..., untouched], other[..., untouched], atol=1e-6)
    assert not np.allclose(out[..., 3], other[..., 3], atol=1e-3)
    scaled = dense_crf(3.0 * v.image + 100.0, probs, SPACING, params=params, per_slice=True, zscore=True)
    assert np.allclose(out, scaled, atol=1e-4)
    coupled = dense_crf(changed, probs, SPACING, params=DenseCRFParams.can_et_al())  # 3D: slices talk
    reference = dense_crf(v.image, probs, SPACING, params=DenseCRFParams.can_et_al())
    assert not np.allclose(coupled[..., untouched], reference[..., untouched], atol=1e-4)


def test_can_em_conf_switches_reach_the_trainer(can_em_trainer):
    trainer = can_em_trainer
    default = trainer({})
    assert not default.seed_areas_per_slice and not default.crf_per_slice and default.crf.iterations == 5
    paper = trainer({"can_em_seed_areas": "slice", "can_em_crf_mode": "slice"})
    assert paper.seed_areas_per_slice and paper.crf_per_slice and paper.crf.iterations == 100
    assert paper._seed_areas_transform({"target_spacing": list(SPACING)}).per_slice
    assert trainer({"can_em_crf": "false", "can_em_crf_mode": "slice"}).crf is None
    with pytest.raises(ValueError, match="conf can_em_seed_areas must be one of 3d, slice, got '2d'"):
        trainer({"can_em_seed_areas": "2d"})


def test_outer_slices_background_anchors_the_stroke_less_slices_in_the_seed_areas(can_em_trainer, convention):
    """Every slice showing the heart is scribbled; the slices beyond it carry no stroke. With
    ``can_em_outer_slices_background`` the trainer's seed areas (what the first M step trains on
    and every E step keeps) make those slices background, and leave the stroked ones to the walk."""
    from monai.transforms import Compose

    spacing = (3.5, 3.5, 8.0)
    v = make_cardiac_phantom(5, shape=(64, 64, 12), spacing=spacing)
    outer = ~(v.label > 0).any(axis=(0, 1))
    assert outer.sum() == 4  # slices 0, 9, 10, 11
    scribbles = simulate_scribbles(v.label, spacing, convention, seed=0)
    assert (convention.seeds(scribbles)[..., outer] == NO_SEED).all()

    def grown(conf):
        pipeline = Compose(can_em_trainer(conf).seed_area_transforms({"target_spacing": list(spacing)}))
        out = pipeline({"image": v.image[None].astype(np.float32), "label": scribbles[None].astype(np.int64)})
        return convention.seeds(np.asarray(out["label"][0]))

    plain, anchored = grown({}), grown({"can_em_outer_slices_background": "true"})
    assert (anchored[..., outer] == BACKGROUND_CLASS).all()
    assert (plain[..., outer] == BACKGROUND_CLASS).mean() < 0.5  # the walk alone leaves most of them unknown
    inner = ~outer
    labelled = anchored[..., inner] != NO_SEED
    assert (anchored[..., inner][labelled] == v.label[..., inner][labelled]).mean() > 0.97


def test_continued_schedule_is_one_decay_over_all_recursions(can_em_trainer):
    import types

    from lib.trainers.can_em import continued_decay

    R, E = 3, 4
    starts = [continued_decay(r, R, E)(0) for r in range(R)]
    assert starts[0] == 1.0 and starts[0] > starts[1] > starts[2] > 0  # later M steps start lower
    for r in range(R - 1):  # each M step starts where the previous one ended
        assert continued_decay(r, R, E)(E) == pytest.approx(continued_decay(r + 1, R, E)(0))
    assert continued_decay(R - 1, R, E)(E) == 0.0
    assert continued_decay(0, 1, E)(2) == pytest.approx((1 - 2 / E) ** 0.9)  # one recursion: the usual decay

    task = can_em_trainer({"can_em_schedule": "continued"})
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    context = types.SimpleNamespace(
        request={"recursion_index": 2, "recursion_count": 3}, optimizer=optimizer, max_epochs=4
    )
    task.lr_scheduler_handler(context)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * continued_decay(2, 3, 4)(0))
