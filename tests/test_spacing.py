"""MONAI 1.6's Spacingd inside a MONAI Label infer task on NIfTI (data dict with image_path,
label_info): the stock transform crashes, ours resamples and keeps the extra keys."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as mt
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.transforms import Spacingd


class _TinyInfer(BasicInferTask):
    def __init__(self, spacing_cls):
        net = torch.nn.Conv3d(1, 2, 1)
        super().__init__(
            path=None,
            network=net,
            type=InferType.SEGMENTATION,
            labels={"organ": 1},
            dimension=3,
            description="spacing check",
        )
        self.spacing_cls = spacing_cls

    def pre_transforms(self, data=None):
        return [
            mt.LoadImaged("image"),
            mt.EnsureChannelFirstd("image"),
            self.spacing_cls("image", pixdim=(3.0, 3.0, 8.0)),
            mt.ScaleIntensityd("image"),
        ]

    def post_transforms(self, data=None):
        return [mt.Activationsd("pred", softmax=True), mt.AsDiscreted("pred", argmax=True), mt.SqueezeDimd("pred", 0)]


@pytest.fixture
def nifti(tmp_path):
    path = str(tmp_path / "img.nii.gz")
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((24, 24, 6)).astype(np.float32), np.diag([1.5, 1.5, 8.0, 1.0])),
        path,
    )
    return path


def test_stock_spacingd_fails_inside_an_infer_task(nifti):
    """Documents the MONAI 1.6 regression; when this fails, MONAI fixed it and ours can go."""
    with pytest.raises(Exception, match="has no attribute 'update'|applying transform"):
        _TinyInfer(mt.Spacingd)({"image": nifti, "label_info": [{"name": "organ", "id": 1}], "device": "cpu"})


def test_our_spacingd_works_inside_an_infer_task(nifti):
    result_file, result_json = _TinyInfer(Spacingd)(
        {"image": nifti, "label_info": [{"name": "organ", "id": 1}], "device": "cpu"}
    )
    out = nib.load(result_file)
    assert out.shape == (12, 12, 6)  # resampled to 3 x 3 x 8 mm
    assert result_json["label_names"] == {"organ": 1}


def test_our_spacingd_keeps_the_extra_keys(nifti):
    data = {"image": nifti, "image_path": nifti, "label_info": [{"name": "organ", "id": 1}]}
    out = mt.Compose([mt.LoadImaged("image"), mt.EnsureChannelFirstd("image"), Spacingd("image", (3, 3, 8))])(data)
    assert out["image_path"] == nifti and out["label_info"] == data["label_info"]
    assert tuple(out["image"].shape) == (1, 12, 12, 6)
