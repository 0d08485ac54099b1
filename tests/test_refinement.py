"""The pure refinement functions: priors, crop box, dense CRF, random walk, refine."""

import os

import numpy as np
import pytest
import torch
from skimage.segmentation import random_walker

from lib.scribbles.convention import NO_SEED
from lib.scribbles.crf import DenseCRFParams, dense_crf
from lib.scribbles.crop import roi_box
from lib.scribbles.prior import likelihood_prior, normalise_intensity, segmentation_prior
from lib.scribbles.random_walk import RandomWalkParams, random_walk
from lib.scribbles.refine import refine

SPACING = (1.5, 1.5, 8.0)


@pytest.fixture
def disk():
    """A bright disk in noise, strokes inside and outside, a noisy prior."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    truth = np.repeat((((yy - 24) ** 2 + (xx - 24) ** 2) < 12**2)[..., None], 4, axis=2)
    image = truth * 1.0 + rng.normal(0, 0.25, truth.shape)
    seeds = np.full(truth.shape, NO_SEED)
    seeds[20:28, 24, :] = 1
    seeds[2:46, 3, :] = 0
    noisy = np.clip(truth * 0.6 + 0.2 + rng.normal(0, 0.25, truth.shape), 0.01, 0.99)
    prior = np.stack([1 - noisy, noisy]).astype(np.float32)
    return image.astype(np.float32), truth, seeds, prior


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_convention_seeds_numpy_and_torch(convention):
    s = np.array([0, 1, 4, 3])
    assert convention.seeds(s).tolist() == [NO_SEED, 1, 0, 3]
    assert convention.seeds(torch.as_tensor(s)).tolist() == [NO_SEED, 1, 0, 3]


def test_priors_are_distributions(disk):
    image, truth, seeds, _ = disk
    img01 = normalise_intensity(image)
    assert img01.min() == 0.0 and img01.max() == 1.0
    for p in (likelihood_prior(img01, seeds, 2, spacing=SPACING), likelihood_prior(img01, seeds, 2, proximity_mm=None)):
        np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    assert _dice(likelihood_prior(img01, seeds, 2, proximity_mm=None).argmax(0) == 1, truth) > 0.7
    near = likelihood_prior(img01, seeds, 2, spacing=SPACING, proximity_mm=5.0)
    far = likelihood_prior(img01, seeds, 2, proximity_mm=None)
    assert near[1][~truth].mean() < far[1][~truth].mean()  # the proximity term keeps a class near its strokes
    seg = segmentation_prior(truth.astype(int), 2, 0.9)
    assert seg[1][truth].min() == pytest.approx(0.9) and seg[1][~truth].max() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="NaN"):
        normalise_intensity(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="confidence"):
        segmentation_prior(truth.astype(int), 2, 0.4)


def test_roi_box_margin_in_mm_and_roi_checks():
    m = np.zeros((40, 40, 10), bool)
    m[20, 20, 5] = True
    box = roi_box([m], SPACING, 9.0)
    assert box == (slice(14, 27), slice(14, 27), slice(3, 8))  # 6 voxels in-plane, 2 slices (ceil 9 / 8)
    assert roi_box([m], SPACING, 9.0, roi=[18, 40, 0, 40, 0, 10])[0] == slice(18, 27)
    with pytest.raises(ValueError, match="outside the volume"):
        roi_box([m], SPACING, 9.0, roi=[50, 60, 0, 40, 0, 10])


def test_dense_crf_improves_a_noisy_prior_and_clamps_seeds(disk):
    image, truth, seeds, prior = disk
    q = dense_crf(image, prior, SPACING, seeds)
    assert q.shape == prior.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    assert _dice(q.argmax(0) == 1, truth) > _dice(prior.argmax(0) == 1, truth) + 0.05
    stroked = seeds != NO_SEED
    assert np.array_equal(q.argmax(0)[stroked], seeds[stroked]) and set(np.unique(q[:, stroked])) <= {0.0, 1.0}


def test_dense_crf_validates_before_the_c_library(disk):
    image, truth, seeds, prior = disk
    with pytest.raises(ValueError, match="prior must be"):
        dense_crf(image, prior[:, :10], SPACING)  # would segfault pydensecrf
    with pytest.raises(ValueError, match="seeds hold class indices"):
        dense_crf(image, prior, SPACING, np.where(seeds == 1, 5, seeds))
    with pytest.raises(ValueError, match="must be a positive number"):
        DenseCRFParams(bilateral_spatial_mm=0)
    with pytest.raises(ValueError, match="must be a number"):
        DenseCRFParams.from_request({"gaussian_weight": "heavy"})
    p = DenseCRFParams.from_request({"gaussian_weight": "10", "iterations": 3, "unrelated": 1})
    assert p.gaussian_weight == 10.0 and p.iterations == 3 and DenseCRFParams.can_et_al().gaussian_weight == 10.0


def test_random_walk_without_data_term_matches_skimage(disk):
    """On a 1 mm grid, with the edges read unsmoothed, the conductances are 1 and the weights are
    skimage's (its default spacing)."""
    image, truth, seeds, _ = disk
    img = image[:, :, :2]
    sd = seeds[:, :, :2]
    iso = (1.0, 1.0, 1.0)
    ours = random_walk(img, sd, iso, 2, params=RandomWalkParams(beta=300.0, gamma=0.0, tol=1e-6, smoothing=0.0))
    ref = random_walker(
        normalise_intensity(img),
        np.where(sd == NO_SEED, 0, sd + 1),
        beta=300.0,
        mode="cg_j",
        tol=1e-6,
        spacing=np.asarray(iso),
        return_full_prob=True,
    )
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_random_walk_reads_edges_through_voxel_scale_smoothing_so_texture_does_not_split_a_structure():
    """A bright disk with voxel-scale noise (as trabecular bone or MR noise), a 5 mm interior stroke
    and a background arc 4-5 mm outside on one side. Read raw, the noise's steps are as steep as the
    disk's border and the walk stops near the stroke; through the sub-voxel Gaussian it fills the
    disk."""
    rng = np.random.default_rng(0)
    shape, spacing = (64, 64, 6), (1.0, 1.0, 2.0)
    x, y = np.meshgrid(np.arange(64) - 32, np.arange(64) - 32, indexing="ij")
    r = np.hypot(x, y)
    disk = np.repeat((r < 16)[..., None], shape[2], axis=2)
    image = np.where(disk, 1.0, 0.5) + rng.normal(0.0, 0.2, shape)
    seeds = np.full(shape, NO_SEED, dtype=np.int64)
    seeds[30:35, 32, :] = 1
    seeds[(r > 20) & (r < 21.5) & (x < 0)] = 0

    def dice(smoothing):
        params = RandomWalkParams(gamma=0.0, smoothing=smoothing)
        found = random_walk(image, seeds, spacing, 2, params=params)[1] > 0.5
        return 2 * (found & disk).sum() / (found.sum() + disk.sum())

    assert RandomWalkParams().smoothing > 0
    assert dice(0.0) < 0.6
    assert dice(RandomWalkParams().smoothing) > 0.95


def test_random_walk_spreads_as_far_in_mm_through_thick_slices_as_in_plane():
    """Homogeneous volume, 1 x 1 x 4 mm voxels: a foreground ball of radius 4 mm in the middle,
    background beyond 16 mm. The solution is radial in mm, so the probability 8 mm away must be the
    same in plane and through the slices (2 slices away)."""
    spacing = (1.0, 1.0, 4.0)
    shape = (41, 41, 11)
    grid = np.stack(np.meshgrid(*[(np.arange(n) - n // 2) * s for n, s in zip(shape, spacing)], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    seeds = np.full(shape, NO_SEED)
    seeds[r <= 4.0] = 1
    seeds[r >= 16.0] = 0
    p = random_walk(
        np.zeros(shape, np.float32),
        seeds,
        spacing,
        2,
        params=RandomWalkParams(gamma=0.0, tol=1e-8, max_iterations=5000),
    )[1]
    c = [n // 2 for n in shape]
    in_plane, through = p[c[0] + 8, c[1], c[2]], p[c[0], c[1], c[2] + 2]
    assert 0.2 < in_plane < 0.8
    assert abs(through - in_plane) < 0.15 * in_plane, (in_plane, through)  # grid error: the ball is 2 slices wide


def test_random_walk_solves_on_one_blas_thread_whatever_the_process_allows(disk, monkeypatch):
    """The solves' BLAS calls run on one thread even where the process allows two: a second
    thread gains them little and stalls them while a training beside the server holds the cores."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import lib.scribbles.random_walk as rw

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    image, _, seeds, _ = disk
    during, solve = [], rw.jacobi_cg

    def watched(*args, **kwargs):
        during.append(blas_threads())
        return solve(*args, **kwargs)

    monkeypatch.setattr(rw, "jacobi_cg", watched)
    with threadpool_limits(limits=2, user_api="blas"):
        allowed = blas_threads()
        p = random_walk(image, seeds, (1.0, 1.0, 2.0), 2, params=RandomWalkParams(gamma=0.0))
        after = blas_threads()
    assert allowed == after == {2}
    assert during and all(t == {1} for t in during), during
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)


def test_random_walk_data_term_improves_the_prior(disk):
    image, truth, seeds, prior = disk
    q = random_walk(image, seeds, SPACING, 2, prior)
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    assert _dice(q.argmax(0) == 1, truth) > _dice(prior.argmax(0) == 1, truth) + 0.05
    stroked = seeds != NO_SEED
    assert np.array_equal(q.argmax(0)[stroked], seeds[stroked])
    with pytest.raises(ValueError, match="at least one stroke"):
        random_walk(image, np.full(image.shape, NO_SEED), SPACING, 2, prior)


@pytest.mark.parametrize("method", ["crf", "random_walk"])
def test_refine_solves_a_box_and_keeps_the_prior_outside(disk, method):
    image, truth, seeds, prior = disk
    local = np.where(np.arange(48)[None, :, None] > 30, NO_SEED, seeds)  # strokes only on the left half
    params = DenseCRFParams() if method == "crf" else RandomWalkParams()
    out = refine(method, image, local, SPACING, prior, params, margin_mm=3.0)
    outside = np.zeros(truth.shape, bool)
    outside[:, 36:, :] = True
    np.testing.assert_array_equal(out[:, outside], prior[:, outside])
    with pytest.raises(ValueError, match="unknown refinement method"):
        refine("graphcut", image, seeds, SPACING, prior, params)
    with pytest.raises(ValueError, match="no scribbles"):
        refine(method, image, np.full(image.shape, NO_SEED), SPACING, prior, params)


def test_pyramid_halves_the_finest_axes_and_votes_strokes_up():
    from lib.scribbles.multiscale import band_children, block_mean, boundary, coarse_seeds, expand, pyramid

    assert pyramid((512, 512, 102), (0.76, 0.76, 3.33), 250_000) == [(2, 2, 1), (2, 2, 1), (2, 2, 2)]
    assert pyramid((40, 40, 10), (1.0, 1.0, 1.0), 16_000) == []
    # strokes: a block with one class keeps it, a block with two classes stays unseeded
    index = np.ravel_multi_index(([0, 1, 2, 3], [0, 0, 0, 0], [0, 0, 0, 0]), (4, 2, 2))
    up_index, up_class = coarse_seeds(index, np.array([1, 1, 0, 2]), (4, 2, 2), (2, 2, 2))
    assert up_index.tolist() == [0] and up_class.tolist() == [1]
    # an odd size is edge-padded, and expand undoes the block mean of a block-constant array
    coarse = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    fine = expand(coarse, (2, 2, 1), (3, 5, 2))
    assert fine.shape == (3, 5, 2) and np.array_equal(block_mean(fine, (2, 2, 1)), coarse)
    # the band: every child of a voxel next to a class change, nothing else
    labels = np.zeros((4, 4, 1), int)
    labels[2:] = 1
    band = band_children(boundary(labels), (2, 2, 1), (8, 8, 1))
    rows = np.unravel_index(band, (8, 8, 1))[0]
    assert band.size == 32 and set(rows.tolist()) == {2, 3, 4, 5}


@pytest.mark.parametrize("method", ["random_walk", "crf"])
def test_coarse_to_fine_keeps_the_direct_solve_dice(method):
    """A box over ``max_voxels`` is solved on a pyramid at about the direct solve's Dice (measured
    0.986 / 0.968 against 0.994 / 0.996 direct: the direct solve reads its edges smoothed, the
    pyramid on block means and, in the full-resolution band, raw)."""
    from lib.scribbles.refine import class_map, from_strokes

    rng = np.random.default_rng(1)
    zz, yy, xx = np.meshgrid(np.arange(64), np.arange(64), np.arange(16), indexing="ij")
    truth = ((zz - 30) ** 2 + (yy - 34) ** 2) / 18**2 + ((xx - 8) * 3.0) ** 2 / 20**2 < 1
    image = (truth * 1.0 + rng.normal(0, 0.3, truth.shape)).astype(np.float32)
    seeds = np.full(truth.shape, NO_SEED)
    for z in (5, 8, 11):  # strokes on three of the 16 slices
        seeds[26:35, 34, z] = 1
        seeds[4:60, 4, z] = 0
    spacing = (1.0, 1.0, 3.0)
    params = RandomWalkParams() if method == "random_walk" else DenseCRFParams()
    direct = class_map(from_strokes(method, image, seeds, spacing, 2, params, max_voxels=10**9)) == 1
    pyramid_ = class_map(from_strokes(method, image, seeds, spacing, 2, params, max_voxels=5_000)) == 1
    assert _dice(pyramid_, truth) > max(0.93, _dice(direct, truth) - 0.03)
    for max_voxels in (5_000, 10**9):  # the class map alone, as the server asks for it: the same
        labels = from_strokes(method, image, seeds, spacing, 2, params, max_voxels=max_voxels, labels=True)
        assert labels.dtype == np.uint8
        assert np.array_equal(labels == 1, pyramid_ if max_voxels < 10**9 else direct)
    roi = [10, 54, 10, 60, 2, 14]  # outside a Slicer ROI: the flat prior's class, in both outputs
    inside_roi = from_strokes(method, image, seeds, spacing, 2, params, roi=roi, labels=True)
    assert np.array_equal(inside_roi, class_map(from_strokes(method, image, seeds, spacing, 2, params, roi=roi)))


def test_loaded_images_reads_a_file_once_and_again_when_it_changes(tmp_path):
    import nibabel as nib

    from lib.transforms.loaded_images import LoadedImages

    path = str(tmp_path / "ct.nii.gz")
    first = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(first, np.diag([0.7, 0.7, 3.0, 1.0])), path)
    images = LoadedImages(capacity=1)
    a, b = images(path), images(path)
    assert (images.hits, images.misses) == (1, 1)
    assert a.shape == (1, 4, 5, 6) and np.array_equal(np.asarray(b[0]), first)
    assert np.allclose(b.pixdim, [0.7, 0.7, 3.0])
    b.meta["filename_or_obj"] = "changed"  # a request's metadata is its own
    assert images(path).meta["filename_or_obj"] != "changed"
    nib.save(nib.Nifti1Image(first[::-1].copy(), np.eye(4)), path)  # replaced on disk: read again
    os.utime(path, ns=(1, 1))
    assert np.array_equal(np.asarray(images(path)[0]), first[::-1]) and images.misses == 2
    with pytest.raises(ValueError, match="capacity"):
        LoadedImages(capacity=0)


def test_a_preloaded_image_is_read_once_even_when_a_request_comes_meanwhile(tmp_path, monkeypatch):
    import threading

    import nibabel as nib

    from lib.transforms.loaded_images import LoadedImages

    path = str(tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.int16), np.eye(4)), path)
    images = LoadedImages(capacity=2)
    reads, started, release = [], threading.Event(), threading.Event()
    load = images._load

    def slow_load(d):  # the read ahead is still under way when the request arrives
        reads.append(d["image"])
        started.set()
        release.wait(5)
        return load(d)

    monkeypatch.setattr(images, "_load", slow_load)
    ahead = images.preload(path)
    assert started.wait(5)
    assert not images.has(path)
    waiting = threading.Thread(target=lambda: images(path))
    waiting.start()
    release.set()
    ahead.join(5), waiting.join(5)
    assert reads == [path] and images.has(path) and (images.hits, images.misses) == (1, 0)
    images.preload(str(tmp_path / "missing.nii.gz")).join(5)  # a failed read ahead is only logged
    assert images.has(path)


def test_absorption_reaches_as_far_in_mm_on_every_grid():
    """A walk from a stroke plane with ``absorption(spacing, reach_mm)``: the probability 10 / 20 /
    40 mm away is the same on 1 mm and 2 mm voxels, whereas one ``gamma`` per voxel is not."""
    from lib.scribbles.random_walk import absorption

    def walk(mm, gamma):
        n = int(round(80 / mm))
        seeds = np.full((3, 3, n), NO_SEED)
        seeds[..., 0], seeds[..., -1] = 1, 0
        flat = np.full((2, 3, 3, n), 0.5, np.float32)
        p = random_walk(
            np.zeros((3, 3, n), np.float32),
            seeds,
            (mm, mm, mm),
            2,
            flat,
            RandomWalkParams(gamma=gamma, tol=1e-8, max_iterations=10_000),
        )[1, 1, 1]
        return np.array([p[int(round(d / mm))] for d in (10, 20, 40)])

    fine, coarse = walk(1.0, absorption((1.0, 1.0, 1.0), 20.0)), walk(2.0, absorption((2.0, 2.0, 2.0), 20.0))
    np.testing.assert_allclose(fine, coarse, atol=0.02)
    assert fine[0] > 0.7 and fine[2] < 0.55  # the stroke's pull fades over ~20 mm toward undecided
    assert np.abs(walk(2.0, absorption((1.0, 1.0, 1.0), 20.0)) - fine).max() > 0.05  # same gamma, other grid
    with pytest.raises(ValueError, match="reach"):
        absorption((1.0, 1.0, 1.0), 0.0)


@pytest.mark.parametrize("method", ["random_walk", "crf"])
def test_a_background_stroke_across_a_false_blob_removes_it(method):
    """A segment with a false blob beside the structure, a background stroke across the blob and a
    foreground stroke in the structure: the blob goes, the structure stays."""
    from lib.scribbles.prior import contradicted

    yy, xx, zz = np.meshgrid(np.arange(48), np.arange(48), np.arange(6), indexing="ij")
    structure = (yy - 16) ** 2 + (xx - 16) ** 2 < 8**2
    blob = (yy - 34) ** 2 + (xx - 34) ** 2 < 6**2
    image = (structure | blob).astype(np.float32) + np.random.default_rng(0).normal(0, 0.1, structure.shape)
    seeds = np.full(structure.shape, NO_SEED)
    seeds[34, 30:39, 2] = 0  # across the blob, on one slice
    seeds[14:19, 16, 2] = 1
    segment = structure | blob
    assert np.array_equal(contradicted(segment.astype(int), seeds), blob)
    seeds_both = seeds.copy()
    seeds_both[34, 34, 4] = 1  # a foreground stroke in it too: the blob is the user's, not contradicted
    assert not contradicted(segment.astype(int), seeds_both).any()

    # Slicer sends the node with the strokes written over the segment: the blob arrives cut in two
    sent = segment & (seeds == NO_SEED)
    assert np.array_equal(contradicted(sent.astype(int), seeds), blob & sent)
    beside = np.full(structure.shape, NO_SEED)
    beside[34, 41:44, 2] = 0  # an arc beside the blob, not across it
    beside[14:19, 16, 2] = 1
    assert not contradicted(segment.astype(int), beside).any()
    trim = np.full(structure.shape, NO_SEED)
    trim[16, 6:27, 2] = 0  # across the structure itself, the largest piece: refined, never voided
    assert not contradicted((segment & (trim == NO_SEED)).astype(int), trim)[structure].any()

    for segment_sent in (segment, sent):
        prior = segmentation_prior(segment_sent.astype(int), 2, 0.9, seeds=seeds)
        params = RandomWalkParams() if method == "random_walk" else DenseCRFParams()
        out = refine(method, image, seeds, SPACING, prior, params, region=segment_sent, labels=True) == 1
        assert _dice(out, structure) > 0.95 and not (out & blob).any()
