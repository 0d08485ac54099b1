"""A training's result is decided by its request's ``seed``: two apps whose networks were built
from different random states (other models listed first, other work done before) train
bit-identical weights from the same scribbles and seed, and different ones from another seed."""

import os
import shutil

import pytest
import torch

from lib.networks import AttentionUNet2D5, ExModUNet, UNet2DBN, seeded_copy
from live_server import copy_app

REQUEST = {
    "model": "pce",
    "max_epochs": 1,
    "epoch_length": 2,
    "train_batch_size": 1,
    "val_split": 0.0,
    "bn_recalibration_batches": 1,
    "device": "cpu",
    "pretrained": False,
}


@pytest.mark.parametrize(
    "cls, kwargs", [(AttentionUNet2D5, {}), (UNet2DBN, {"features": (8, 16, 32)}), (ExModUNet, {"features": (8, 16)})]
)
def test_seeded_copy_redraws_every_weight_from_the_seed(cls, kwargs):
    torch.manual_seed(1)
    a = cls(**kwargs)
    torch.manual_seed(2)
    b = cls(**kwargs)
    state = torch.get_rng_state()
    ca, cb, other = seeded_copy(a, 0), seeded_copy(b, 0), seeded_copy(a, 1)
    assert torch.equal(state, torch.get_rng_state())  # the global random state is not consumed
    differs = [k for k, v in a.state_dict().items() if not torch.equal(v, b.state_dict()[k])]
    assert len(differs) > 10  # the originals differ ...
    for k, v in ca.state_dict().items():
        assert torch.equal(v, cb.state_dict()[k]), k  # ... their seeded copies do not
    assert sum(not torch.equal(v, other.state_dict()[k]) for k, v in ca.state_dict().items()) == len(differs)


def test_seeded_copy_refuses_modules_it_cannot_reinitialise():
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(1))

    with pytest.raises(TypeError, match="Scale.*reset_parameters"):
        seeded_copy(torch.nn.Sequential(torch.nn.Conv3d(1, 1, 1), Scale()), 0)


def _app(tmp_path, sample_root, tag, models):
    """An in-process app on a copy of the sample studies; ``(app, app_dir)``."""
    from main import ScribbleSegApp
    from monailabel.interfaces.utils.app import clear_cache

    studies = shutil.copytree(os.path.join(sample_root, "studies"), str(tmp_path / f"studies_{tag}"))
    app_dir = copy_app(str(tmp_path / f"app_{tag}"))
    clear_cache()
    return ScribbleSegApp(app_dir, studies, {"models": models}), app_dir


def _published(app_dir):
    return torch.load(os.path.join(app_dir, "model", "pce.pt"), map_location="cpu", weights_only=True)


def _train(tmp_path, sample_root, tag, models, seed):
    app, app_dir = _app(tmp_path, sample_root, tag, models)
    app.train({**REQUEST, "seed": seed, "name": "run"})
    return _published(app_dir)


@pytest.fixture
def in_process(monkeypatch):
    from monailabel.config import settings

    for key in ("MONAI_LABEL_DATASTORE_AUTO_RELOAD", "MONAI_LABEL_AUTO_UPDATE_SCORING", "MONAI_LABEL_TRACKING_ENABLED"):
        monkeypatch.setattr(settings, key, False)  # in-process apps: no server to post scoring requests to


def test_same_seed_same_weights_whatever_the_app_built_before(tmp_path, sample_root, in_process):
    torch.manual_seed(11)
    first = _train(tmp_path, sample_root, "a", "pce", seed=0)
    torch.manual_seed(12)  # another global state, and another model built before pce
    second = _train(tmp_path, sample_root, "b", "scribble2d5,pce", seed=0)
    third = _train(tmp_path, sample_root, "c", "pce", seed=1)
    assert first.keys() == second.keys()
    for k in first:
        assert torch.equal(first[k], second[k]), k
    assert any(not torch.equal(first[k], third[k]) for k in first if first[k].is_floating_point())


def test_a_new_run_name_starts_from_the_seed_a_reused_one_resumes(tmp_path, sample_root, in_process):
    """MONAI Label resumes a training from the best checkpoint of an earlier run of the same name,
    whatever ``pretrained`` says; a new run name with ``pretrained: false`` starts from the seed's
    initial weights (README, "Training"; the annotation-loop benchmark's ``--retrain scratch``)."""
    app, app_dir = _app(tmp_path, sample_root, "runs", "pce")
    app.train({**REQUEST, "seed": 0, "name": "first"})
    first = _published(app_dir)
    app.train({**REQUEST, "seed": 0, "name": "first"})
    resumed = _published(app_dir)
    app.train({**REQUEST, "seed": 0, "name": "second"})
    fresh = _published(app_dir)
    for k in first:
        assert torch.equal(first[k], fresh[k]), k
    assert any(not torch.equal(first[k], resumed[k]) for k in first if first[k].is_floating_point())
