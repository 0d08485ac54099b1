"""Layout of large volumes: block-wise copies between C and Fortran order, and NIfTI files read
into C order with MONAI's metadata."""

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch
from monai.transforms import EnsureChannelFirst, LoadImage

from lib.arrays import BLOCK, in_order
from lib.transforms import COrderNibabelReader


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


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_the_c_order_reader_reads_what_monai_reads(tmp_path, suffix, dtype):
    """Same values, shape and metadata as MONAI's default readers, C-contiguous: label maps as a
    refinement request sends them (uint8) and CT intensities (int16, cast to float32 on load)."""
    rng = np.random.default_rng(1)
    label = (rng.integers(0, 5, size=(37, 20, 9)) * (rng.random((37, 20, 9)) < 0.1)).astype(dtype)
    path = str(tmp_path / f"node{suffix}")
    if suffix == ".nrrd":  # not NIfTI: MONAI's own reader takes it
        header = {"space": "left-posterior-superior", "space directions": np.diag([0.7, 0.7, 3.0])}
        nrrd.write(path, label, {**header, "space origin": np.zeros(3)})
    else:
        nib.save(nib.Nifti1Image(label, np.diag([0.7, 0.7, 3.0, 1.0])), path)
    for cast in (None, np.float32):
        ours = EnsureChannelFirst()(LoadImage(image_only=True, dtype=cast, reader=COrderNibabelReader())(path))
        monai = EnsureChannelFirst()(LoadImage(image_only=True, dtype=cast)(path))
        assert ours.shape == (1,) + label.shape and ours.is_contiguous() and ours.dtype == monai.dtype
        assert torch.equal(ours.as_tensor(), monai.as_tensor())
        np.testing.assert_array_equal(ours.affine, monai.affine)
        assert sorted(ours.meta) == sorted(monai.meta)
    np.testing.assert_array_equal(np.asarray(ours)[0], label)
    if suffix != ".nrrd":  # nibabel's own array is Fortran-ordered; the reader's is already C
        reader = COrderNibabelReader()
        array, _ = reader.get_data(reader.read(path))
        assert array.flags.c_contiguous and not np.asanyarray(nib.load(path).dataobj).flags.c_contiguous
