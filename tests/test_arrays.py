"""Layout of large volumes: block-wise copies between C and Fortran order, and the label maps a
refinement request sends, read into C order whatever their file format."""

import nibabel as nib
import nrrd
import numpy as np
import pytest
from monai.transforms import EnsureChannelFirst, LoadImage

from lib.arrays import BLOCK, in_order
from lib.transforms import LoadLabelmapd


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, bool])
@pytest.mark.parametrize("order", ["C", "F"])
def test_in_order_copies_every_value_into_the_asked_layout(dtype, order):
    rng = np.random.default_rng(0)
    shape = (BLOCK[0] * 2 + 5, BLOCK[1] + 3, BLOCK[2] * 2 + 1)  # partial blocks on every axis
    a = (rng.random(shape) * 200).astype(dtype)
    source = np.asfortranarray(a) if order == "C" else a  # the other layout
    out = in_order(source, order)
    assert out.flags.c_contiguous if order == "C" else out.flags.f_contiguous
    assert out.dtype == a.dtype and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


def test_in_order_returns_an_array_already_in_order_and_copies_views():
    a = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    assert in_order(a, "C") is a
    view = a[::2, :, 1:]  # neither C- nor F-contiguous
    np.testing.assert_array_equal(in_order(view, "C"), view)
    np.testing.assert_array_equal(in_order(view, "F"), view)
    assert in_order(view, "F").flags.f_contiguous
    flat = np.arange(6).reshape(2, 3)
    assert in_order(flat, "F").flags.f_contiguous and np.array_equal(in_order(flat, "F"), flat)
    with pytest.raises(ValueError, match="order must be 'C' or 'F'"):
        in_order(a, "A")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_a_label_map_reads_as_monai_reads_it_in_c_order(tmp_path, suffix):
    rng = np.random.default_rng(1)
    label = (rng.integers(0, 5, size=(37, 20, 9)) * (rng.random((37, 20, 9)) < 0.1)).astype(np.uint8)
    path = str(tmp_path / f"node{suffix}")
    if suffix == ".nrrd":
        nrrd.write(
            path,
            label,
            {
                "space": "left-posterior-superior",
                "space directions": np.diag([0.7, 0.7, 3.0]),
                "space origin": np.zeros(3),
            },
        )
    else:
        nib.save(nib.Nifti1Image(label, np.diag([0.7, 0.7, 3.0, 1.0])), path)
    got = LoadLabelmapd("label")({"label": path, "other": 1})
    expected = EnsureChannelFirst()(LoadImage(image_only=True, dtype=None)(path))
    assert got["other"] == 1 and got["label"].shape == (1,) + label.shape
    assert np.asarray(got["label"]).flags.c_contiguous
    np.testing.assert_array_equal(np.asarray(got["label"]), np.asarray(expected))
    np.testing.assert_array_equal(np.asarray(got["label"])[0], label)
