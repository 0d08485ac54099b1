"""Reading a label map sent with a request (Slicer's segmentation node, a scribble map)."""

from typing import Hashable, Mapping

import nibabel as nib
import numpy as np
from monai.config import KeysCollection
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, MapTransform

from lib.arrays import in_order

NIFTI = (".nii", ".nii.gz")


class LoadLabelmapd(MapTransform):
    """Each key's path replaced by its label map, channel first ``(1, H, W, D)``, values as stored.

    A 3D NIfTI is read with nibabel and brought to C order by :func:`lib.arrays.in_order`: MONAI's
    ``LoadImage`` makes the same array through numpy's strided copy, ~0.2 s of every refinement
    round trip on a full-size CT. Other files (NRRD, 4D) go through ``LoadImaged``.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self._monai = Compose([LoadImaged(keys, image_only=True, dtype=None), EnsureChannelFirstd(keys)])

    def __call__(self, data: Mapping[Hashable, str]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            array = None
            if path.lower().endswith(NIFTI):
                image = nib.load(path)
                if len(image.shape) == 3:
                    array = in_order(np.asanyarray(image.dataobj), "C")[None]
            d[key] = array if array is not None else self._monai({key: path})[key]
        return d
