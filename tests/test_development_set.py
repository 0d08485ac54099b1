"""The real development set: labelled CT and MR volumes from registry packages, and the random
walk's seed areas on one of them (strokes on 3 axial slices must grow into the slices between)."""

import numpy as np

from lib.datasets.development import CASES, KINDS, development_set, load_case
from lib.scribbles.convention import NO_SEED, ScribbleConvention
from lib.scribbles.seed_areas import seed_areas
from lib.scribbles.simulate import simulate_scribbles, slicer_protocol


def test_development_set_has_real_ct_and_mr_structures_of_every_kind(tmp_path):
    cases = development_set(["ct_chest", "ct_spine", "mr_spine"], cache_dir=str(tmp_path))
    assert {c.modality for c in cases} == {"CT", "MR"}
    for case in cases:
        v = case.volume
        assert v.image.shape == v.label.shape and min(v.spacing) > 0
        for name, value in case.labels.items():
            assert (v.label == value).sum() > 100, (case.name, name)
            assert case.kinds[name] in ("large", "elongated", "bone", "small")
    assert sum(len(c.labels) for c in cases) >= 12
    assert len(CASES) >= 4 and set(KINDS.values()) == {"large", "elongated", "bone", "small"}
    again = load_case("ct_spine", cache_dir=str(tmp_path))  # from the cache: identical
    np.testing.assert_array_equal(again.volume.label, cases[1].volume.label)


def test_seed_areas_grow_beyond_the_strokes_on_a_real_volume(tmp_path):
    case = load_case("ct_spine", cache_dir=str(tmp_path))
    v = case.volume
    truth = v.label == case.labels["vertebra L3"]
    convention = ScribbleConvention({"vertebra": 1})
    seeds = convention.seeds(
        simulate_scribbles(truth.astype(np.uint8), v.spacing, convention, seed=0, config=slicer_protocol(3))
    )
    grown = seed_areas(v.image, seeds, v.spacing, 2, tau=0.99)
    scribbled = np.unique(np.nonzero(seeds != NO_SEED)[2])
    assert len(scribbled) == 3
    other = np.ones(v.image.shape[2], bool)
    other[scribbled] = False
    foreground = grown == 1
    assert foreground[:, :, other].sum() > 50  # grown into the unscribbled slices
    assert truth[foreground].mean() > 0.95  # and precise
