"""One training step of the ``exmod`` and ``zscribbleseg`` losses on phantom patches: every term
finite, gradients reach the network, the spatial prior switches on at its epoch."""

import types

import numpy as np
import pytest
import torch

from lib.datasets.phantoms import make_cardiac_phantom
from lib.losses import PartialCrossEntropyLoss
from lib.networks import UNet2DBN
from lib.scribbles.simulate import simulate_scribbles
from lib.trainers.exmod import ExModTrainTask
from lib.trainers.zscribbleseg import ZScribbleSegTrainTask


def _batch(convention):
    v = make_cardiac_phantom(4, shape=(64, 64, 4), spacing=(3.0, 3.0, 32.0))
    s = simulate_scribbles(v.label, v.spacing, convention, seed=0)
    image = torch.as_tensor((v.image - v.image.mean()) / v.image.std(), dtype=torch.float32)[None, None]
    return {
        "image": image.repeat(2, 1, 1, 1, 1),
        "label": torch.as_tensor(s.astype(np.int64))[None, None].repeat(2, 1, 1, 1, 1),
    }


@pytest.mark.parametrize(
    "cls, epoch, expected",
    [
        (ExModTrainTask, 1, {"sup", "mix", "global", "local"}),
        (ZScribbleSegTrainTask, 1, {"sup", "mix", "global", "local"}),
        (ZScribbleSegTrainTask, 3, {"sup", "mix", "global", "local", "prior"}),
        ("mixup", 1, {"sup", "mix", "global", "local"}),
        ("none", 1, {"sup", "mix", "global", "local"}),
    ],
)
def test_one_step_of_the_mix_recipes(tmp_path, convention, cls, epoch, expected):
    torch.manual_seed(0)
    net = UNet2DBN(out_channels=convention.num_classes, features=(8, 16, 32), dropout=0.1)
    kwargs = {"prior_start_epoch": 3, "radius": 3} if cls is ZScribbleSegTrainTask else {}
    if cls in ("mixup", "none"):
        cls, kwargs = ExModTrainTask, {"mix": cls}
    task = cls(str(tmp_path), net, convention, str(tmp_path / "m.pt"), occlusion=16, **kwargs)
    if cls is ZScribbleSegTrainTask:
        task.train_pre_transforms(
            types.SimpleNamespace(request={"target_spacing": [3.0, 3.0, 32.0], "patch_size": [64, 64, 4]})
        )
    engine = types.SimpleNamespace(
        network=net, loss_function=PartialCrossEntropyLoss(convention), state=types.SimpleNamespace(epoch=epoch)
    )
    batch = _batch(convention)
    terms = task.compute_loss(engine, net(batch["image"]), batch)
    assert set(terms) - {"loss"} == expected
    assert all(torch.isfinite(v) for v in terms.values())
    if kwargs.get("mix") == "none":
        assert float(terms["mix"]) == float(terms["global"]) == 0.0
    if "prior" in expected:  # the EM estimate of the epoch is kept for the stats
        assert task._pi["n"] == 1 and float(task._pi["sum"].sum()) == pytest.approx(1.0, abs=1e-4)
    terms["loss"].backward()
    assert sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None) > 0


def test_plain_mixup_blends_with_one_lambda(convention, tmp_path):
    from lib.scribbles.mixing import mixup

    a, b = torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8)
    x, m = mixup(a, b)
    lam = float(m.flatten()[0])
    assert (m == lam).all() and torch.allclose(x, torch.full_like(x, 1 - lam))
    with pytest.raises(ValueError, match="cutmix"):
        ExModTrainTask(str(tmp_path), UNet2DBN(features=(4, 8)), convention, str(tmp_path / "x.pt"), mix="puzzle")


def test_outer_slices_background_reaches_the_training_patches(tmp_path, convention):
    """Through the recipe's real load pipeline (NIfTI in, resampled, cropped): with the switch on,
    every patch slice beyond the stroked range is a background stroke; off, it is unannotated."""
    import nibabel as nib
    from monai.transforms import Compose

    v = make_cardiac_phantom(4, shape=(64, 64, 12), spacing=(3.0, 3.0, 8.0))
    s = simulate_scribbles(v.label, v.spacing, convention, seed=0)
    stroked = np.flatnonzero((s > 0).any(axis=(0, 1)))
    assert stroked[0] > 0 or stroked[-1] < 11, "the phantom must leave stroke-less slices"
    paths = {}
    for key, array in (("image", v.image.astype(np.float32)), ("label", s.astype(np.uint8))):
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        nib.save(nib.Nifti1Image(array, np.diag([3.0, 3.0, 8.0, 1.0])), paths[key])
    request = {"target_spacing": [3.0, 3.0, 8.0], "patch_size": [32, 32, 12]}
    net = UNet2DBN(out_channels=convention.num_classes, features=(8, 16, 32))
    outside = [z for z in range(12) if z < stroked[0] or z > stroked[-1]]
    for switch, expected in ((True, convention.background_scribble_id), (False, 0)):
        task = ExModTrainTask(str(tmp_path), net, convention, str(tmp_path / "m.pt"), outer_slices_background=switch)
        out = Compose(task.train_pre_transforms(types.SimpleNamespace(request=request)))(dict(paths))
        label = (out[0] if isinstance(out, list) else out)["label"]
        assert label.shape[-1] == 12
        assert (label[0][..., outside] == expected).all()
