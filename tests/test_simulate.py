import numpy as np
import pytest

from lib.datasets.phantoms import make_cardiac_phantom
from lib.scribbles.simulate import ScribbleSimulation, scribble_coverage, simulate_scribbles


@pytest.fixture(scope="module")
def phantoms():
    return [make_cardiac_phantom(seed) for seed in range(4)]


ALL_STROKES = ScribbleSimulation(contour_strokes=True, background_strokes=3)


def test_a_stroke_never_leaves_its_class(phantoms, convention):
    for seed, p in enumerate(phantoms):
        s = simulate_scribbles(p.label, p.spacing, convention, seed=seed, config=ALL_STROKES)
        idx, ann = convention.targets(s)
        assert ann.sum() > 0
        assert np.array_equal(idx[ann], p.label[ann]), f"phantom {seed}: a stroke crosses a class boundary"
        assert set(np.unique(s)) == {0, 1, 2, 3, 4}


def test_every_class_present_in_a_scribbled_slice_gets_a_stroke(phantoms, convention):
    for seed, p in enumerate(phantoms):
        s = simulate_scribbles(p.label, p.spacing, convention, seed=seed)
        idx, ann = convention.targets(s)
        scribbled = np.flatnonzero(ann.any(axis=(0, 1)))
        assert len(scribbled) == len(np.flatnonzero((p.label > 0).any(axis=(0, 1))))  # slice_fraction 1
        for z in scribbled:
            present = set(np.unique(p.label[..., z])) - {0}
            stroked = set(np.unique(idx[..., z][ann[..., z]])) - {0}
            assert present == stroked, f"phantom {seed} slice {z}: classes {present}, strokes {stroked}"


def test_tiny_regions_still_get_a_stroke(convention):
    mask = np.zeros((40, 40, 3), np.uint8)
    mask[20, 20, 1] = 1  # a one-voxel partial-volume sliver
    mask[5:15, 5:15, 1] = 2
    s = simulate_scribbles(mask, (1.5, 1.5, 8.0), convention, seed=0)
    assert s[20, 20, 1] == 1 and (s[..., 1] == 2).any()


def test_same_seed_same_strokes_other_seed_other_strokes(phantoms, convention):
    p = phantoms[0]
    a = simulate_scribbles(p.label, p.spacing, convention, seed=3, config=ALL_STROKES)
    b = simulate_scribbles(p.label, p.spacing, convention, seed=3, config=ALL_STROKES)
    c = simulate_scribbles(p.label, p.spacing, convention, seed=4, config=ALL_STROKES)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_slice_fraction_knob(phantoms, convention):
    p = phantoms[1]
    n_with = len(np.flatnonzero((p.label > 0).any(axis=(0, 1))))
    for f in (0.25, 0.5):
        s = simulate_scribbles(p.label, p.spacing, convention, seed=0, config=ScribbleSimulation(slice_fraction=f))
        assert len(np.flatnonzero((s > 0).any(axis=(0, 1)))) == max(1, round(f * n_with))


def test_default_coverage_is_that_of_expert_scribbles(phantoms, convention):
    """Real expert scribbles cover ~5-10 % of the structures' voxels and a few % of background."""
    cov = [
        scribble_coverage(simulate_scribbles(p.label, p.spacing, convention, seed=i), p.label, convention)
        for i, p in enumerate(phantoms)
    ]
    structures = np.median([c["structures"] for c in cov])
    background = np.median([c["background"] for c in cov])
    assert 0.04 <= structures <= 0.10, structures
    assert 0.01 <= background <= 0.05, background
    for name in convention.labels:
        assert min(c[name] for c in cov) > 0.02, name


def test_stroke_width_is_in_millimetres(convention):
    """The same disk at 1 mm and 0.5 mm in-plane gives strokes of the same width in mm."""

    def disk(n, s):
        yy, xx = np.mgrid[:n, :n] * s
        m = np.zeros((n, n, 1), np.uint8)
        m[..., 0] = ((yy - n * s / 2) ** 2 + (xx - n * s / 2) ** 2) < (20.0**2)
        return m

    cfg = ScribbleSimulation(stroke_width_mm=3.0, arc_fraction=(1.0, 1.0), max_erosion_mm=0.0, background_strokes=0)
    area = []
    for s in (1.0, 0.5):
        scr = simulate_scribbles(disk(int(60 / s), s), (s, s, 5.0), convention, seed=0, config=cfg)
        area.append((scr == 1).sum() * s * s)  # mm^2 of stroke
    assert area[1] == pytest.approx(area[0], rel=0.35)


def test_invalid_inputs(convention):
    with pytest.raises(ValueError, match="must be 3D"):
        simulate_scribbles(np.zeros((4, 4)), (1, 1, 1), convention)
    with pytest.raises(ValueError, match="not class indices"):
        simulate_scribbles(np.full((4, 4, 2), 7), (1, 1, 1), convention)
    with pytest.raises(ValueError, match="slice_fraction"):
        ScribbleSimulation(slice_fraction=0)
    assert not simulate_scribbles(np.zeros((8, 8, 2), np.uint8), (1, 1, 1), convention).any()
