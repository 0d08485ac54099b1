import numpy as np
import pytest
import torch

from lib.scribbles.convention import (
    UNANNOTATED,
    ScribbleConvention,
    from_ignore_index,
    from_label_info,
    from_slicer_binary,
    parse_label_info,
    parse_labels,
    to_scribble_map,
)


@pytest.mark.parametrize(
    "value",
    [
        {"lv": 1, "myocardium": 2, "rv": 3},
        '{"lv": 1, "myocardium": 2, "rv": 3}',
        '{"background": 0, "rv": 3, "lv": 1, "myocardium": 2}',
        "lv, myocardium, rv",
        '["lv", "myocardium", "rv"]',
    ],
)
def test_parse_labels_accepts_the_usual_forms(value):
    assert parse_labels(value) == {"lv": 1, "myocardium": 2, "rv": 3}
    assert list(parse_labels(value)) == ["lv", "myocardium", "rv"]  # ordered by id


@pytest.mark.parametrize(
    "value, message",
    [
        ('{"lv": 1, "rv": 3}', "ids must be 1..K"),
        ('{"lv": 1, "rv": 1}', "ids must be 1..K"),
        ('{"lv": 1, "LV": 2}', "given twice"),
        ('{"lv": 0}', "id 0 is background"),
        ('{"lv": "one"}', "ids must be integers"),
        ('{"lv": 1,', "not valid JSON"),
        ('{"background": 0}', "no foreground class"),
    ],
)
def test_parse_labels_rejects_with_a_clear_message(value, message):
    with pytest.raises(ValueError, match=message):
        parse_labels(value)


def test_no_labels_is_an_error_naming_the_conf_key_not_a_cardiac_default():
    for missing in (None, "", "  "):
        with pytest.raises(ValueError, match="no labels: name the structures to segment with conf labels"):
            parse_labels(missing)
    with pytest.raises(ValueError, match="conf labels"):
        ScribbleConvention.from_conf({})


def test_configured_name_finds_a_label_case_insensitively():
    assert ScribbleConvention({"LV": 1, "Myocardium": 2}).configured_name("myocardium") == "Myocardium"
    with pytest.raises(ValueError, match="'spine' is not a label of this app"):
        ScribbleConvention({"liver": 1, "tumour": 2}).configured_name("spine")


def test_default_background_scribble_id_is_k_plus_one_and_overridable():
    assert ScribbleConvention({"lv": 1, "myocardium": 2, "rv": 3}).background_scribble_id == 4
    assert ScribbleConvention({"organ": 1}).background_scribble_id == 2
    assert (
        ScribbleConvention.from_conf({"labels": "a,b", "background_scribble_id": "255"}).background_scribble_id == 255
    )
    for bad in (0, 2, "x"):
        with pytest.raises(ValueError, match="background_scribble_id"):
            ScribbleConvention({"a": 1, "b": 2}, background_scribble_id=bad)


def test_validate_names_the_values_outside_the_convention(convention):
    ok = np.array([[0, 1], [3, 4]], dtype=np.uint8)
    assert convention.validate(ok).dtype == np.int64
    assert convention.validate(ok.astype(np.float32)).tolist() == ok.tolist()  # NIfTI often stores floats
    with pytest.raises(ValueError, match=r"values \[5, 255\] outside the convention .*4 = background scribble"):
        convention.validate(np.array([0, 5, 255]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        convention.validate(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="non-integer"):
        convention.validate(np.array([0.0, 1.5]))


def test_targets_on_numpy_and_torch(convention):
    s = np.array([0, 1, 2, 3, 4, 0])
    idx, ann = convention.targets(s)
    assert idx[ann].tolist() == [1, 2, 3, 0]
    assert ann.tolist() == [False, True, True, True, True, False]
    tidx, tann = convention.targets(torch.as_tensor(s).view(1, 1, 6))
    assert tidx.shape == (1, 1, 6) and tidx[tann].tolist() == [1, 2, 3, 0]


def test_from_dense_marks_everything_annotated(convention):
    dense = np.array([0, 1, 2, 3])
    assert convention.from_dense(dense).tolist() == [4, 1, 2, 3]
    with pytest.raises(ValueError, match="not class indices"):
        convention.from_dense(np.array([0, 4]))


def test_label_info_is_mapped_by_name_not_by_id(convention):
    # Slicer numbers segments in the order they appear: here a visible "background" comes first
    label = np.array([0, 1, 2, 3, 4])
    info = [
        {"name": "background", "idx": 1},
        {"name": "RV", "idx": 2},
        {"name": "lv", "idx": 3},
        {"name": "myocardium", "idx": 4},
    ]
    assert from_label_info(label, info, convention).tolist() == [0, 4, 3, 1, 2]
    # the same as a JSON string, with "id" keys
    info_json = '[{"name": "lv", "id": 4}, {"name": "background_strokes", "id": 1}]'
    assert from_label_info(np.array([0, 4, 1]), info_json, convention).tolist() == [0, 1, 4]


def test_label_info_errors(convention):
    with pytest.raises(ValueError, match="'liver' is not a label of this app"):
        from_label_info(np.array([0, 1]), [{"name": "liver", "id": 1}], convention)
    with pytest.raises(ValueError, match=r"values \[7\] that label_info does not describe"):
        from_label_info(np.array([0, 1, 7]), [{"name": "lv", "id": 1}], convention)
    with pytest.raises(ValueError, match="selected_label_name"):
        from_label_info(np.array([0, 1]), [{"name": "foreground_scribbles", "id": 1}], convention)
    with pytest.raises(ValueError, match="needs a 'name' and an 'id'"):
        parse_label_info([{"name": "lv"}])
    with pytest.raises(ValueError, match="gives id 1 to both"):
        parse_label_info([{"name": "lv", "id": 1}, {"name": "rv", "id": 1}])


def test_slicer_binary_mode():
    # the whole segmentation node: the current "lv" segmentation (1), another segment (2), and strokes
    label = np.array([0, 1, 1, 2, 3, 4, 4])
    info = [
        {"name": "lv", "id": 1},
        {"name": "rv", "id": 2},
        {"name": "background_scribbles", "id": 3},
        {"name": "foreground_scribbles", "id": 4},
    ]
    b = from_slicer_binary(label, info, "lv")
    assert b.convention.labels == {"lv": 1} and b.convention.background_scribble_id == 2
    assert b.scribbles.tolist() == [0, 0, 0, 0, 2, 1, 1]
    assert b.prior.tolist() == [False, True, True, False, False, False, False]
    # a node of a large volume is mostly zeros: only its non-zero voxels are relabelled, same result
    sparse = np.zeros((30, 20, 7), label.dtype)
    sparse[3, 2:9, 1:2] = label[:, None]
    s = from_slicer_binary(sparse, info, "lv")
    assert s.scribbles.shape == sparse.shape and s.prior.shape == sparse.shape
    assert s.scribbles[3, 2:9, 1].tolist() == [0, 0, 0, 0, 2, 1, 1] and s.scribbles.sum() == 4
    assert s.prior[3, 2:9, 1].tolist() == b.prior.tolist() and s.prior.sum() == 2
    with pytest.raises(ValueError, match=r"values \[9\] that label_info does not describe"):
        from_slicer_binary(np.where(sparse == 2, 9, sparse), info, "lv")
    with pytest.raises(ValueError, match="selected_label_name"):
        from_slicer_binary(label, info, "")
    with pytest.raises(ValueError, match="neither 'foreground_scribbles' nor 'background_scribbles'"):
        from_slicer_binary(np.array([0, 1]), [{"name": "lv", "id": 1}], "lv")


def test_acdc_mscmr_convention_is_converted_by_name(convention):
    # ACDC/MSCMR: 0 background, 1 RV, 2 Myo, 3 LV, 4 unannotated
    acdc = np.array([4, 0, 1, 2, 3, 4])
    from lib.datasets.importers import ACDC_CLASS_NAMES

    assert from_ignore_index(acdc, convention, ACDC_CLASS_NAMES).tolist() == [UNANNOTATED, 4, 3, 2, 1, UNANNOTATED]
    with pytest.raises(ValueError, match=r"values \[5\] outside the source convention"):
        from_ignore_index(np.array([0, 5]), convention, ACDC_CLASS_NAMES)


def test_to_scribble_map_dispatches_on_label_info(convention):
    assert to_scribble_map(np.array([0, 4]), convention).tolist() == [0, 4]
    assert to_scribble_map(np.array([0, 9]), convention, [{"name": "rv", "id": 9}]).tolist() == [0, 3]
    with pytest.raises(ValueError, match="outside the convention"):
        to_scribble_map(np.array([0, 9]), convention)


@pytest.mark.parametrize("stroked", [0.8, 0.05], ids=["dense", "strokes"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_seeds_of_any_integer_map_equal_the_tensor_rule(dtype, stroked):
    """The seed map (class index at strokes, NO_SEED elsewhere) is the same whatever the integer
    type the scribbles arrive in, and the same as the tensor path computes: for a dense map and
    for one whose strokes are a sliver of the volume (relabelled voxel by voxel)."""
    from lib.scribbles.convention import NO_SEED

    conv = ScribbleConvention({"lv": 1, "myocardium": 2, "rv": 3})
    rng = np.random.default_rng(0)
    scribbles = (rng.integers(1, 5, size=(17, 16, 5)) * (rng.random((17, 16, 5)) < stroked)).astype(dtype)
    seeds = conv.seeds(scribbles)
    assert seeds.dtype == np.int64
    expected = np.where(scribbles == conv.background_scribble_id, 0, scribbles).astype(np.int64)
    expected[scribbles == UNANNOTATED] = NO_SEED
    np.testing.assert_array_equal(seeds, expected)
    np.testing.assert_array_equal(seeds, conv.seeds(torch.as_tensor(scribbles.astype(np.int64))).numpy())
    small = conv.seeds(scribbles, conv.seed_dtype())  # what a refinement request works on
    assert small.dtype == np.int8
    np.testing.assert_array_equal(small, expected)


def test_seed_dtype_is_the_smallest_signed_type_that_holds_every_class():
    assert ScribbleConvention({"lv": 1}).seed_dtype() == np.int8
    assert ScribbleConvention({f"c{i}": i for i in range(1, 130)}).seed_dtype() == np.int16


@pytest.mark.parametrize("stroked", [0.8, 0.05, 0.0], ids=["dense", "strokes", "empty"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, bool])
def test_present_values_equal_numpy_unique(dtype, stroked):
    """The one-pass value census (dense maps) and its non-zero-only form (stroke maps) give what
    ``np.unique`` gives, in the array's own type."""
    from lib.scribbles.convention import present_values

    rng = np.random.default_rng(1)
    a = (rng.integers(1, 9, size=(20, 10, 6)) * (rng.random((20, 10, 6)) < stroked)).astype(dtype)
    for view in (a, a[:, ::3]):  # contiguous and strided
        got = present_values(view)
        np.testing.assert_array_equal(got, np.unique(view))
        assert got.dtype == view.dtype
