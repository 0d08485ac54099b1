"""MONAI's NIfTI reader, handing its arrays over in C order.

NIfTI stores voxels x-fastest (Fortran order) and ``NibabelReader`` returns them so; ``LoadImage``
then makes the tensor C-contiguous with numpy's strided copy, ~0.6 s for a 512 x 512 x 100 CT in
float32 and ~0.2 s for a uint8 label map of that size, paid on every image a session opens and
on every label a refinement request sends. Here the array is brought to C order by
:func:`lib.arrays.in_order` in its stored type (int16 for a CT, before ``LoadImage`` casts it),
block by block; the metadata is ``NibabelReader``'s own.
"""

from monai.data import NibabelReader

from lib.arrays import in_order


class COrderNibabelReader(NibabelReader):
    """``NibabelReader`` whose arrays come C-contiguous (same values, shape and metadata)."""

    def _get_array_data(self, img, filename):
        return in_order(super()._get_array_data(img, filename), "C")
