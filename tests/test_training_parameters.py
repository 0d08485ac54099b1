"""Training request parameters: every key a recipe shows in ``/info`` is a checked parameter that
accepts its own default, and bad values are refused with the parameter's name and what to send."""

import os
import shutil

import pytest

from lib.errors import RequestError
from lib.trainers.parameters import TRAINING_PARAMETERS, check_parameters
from live_server import copy_app


@pytest.fixture(scope="module")
def app(tmp_path_factory, sample_root):
    from main import ScribbleSegApp
    from monailabel.interfaces.utils.app import clear_cache

    work = tmp_path_factory.mktemp("parameters")
    studies = shutil.copytree(os.path.join(sample_root, "studies"), str(work / "studies"))
    clear_cache()
    return ScribbleSegApp(copy_app(str(work / "app")), studies, {"models": "all"})


def test_every_recipe_accepts_the_defaults_it_shows(app):
    assert len(app._trainers) >= 6
    for name, trainer in app._trainers.items():
        shown = app.info()["trainers"][name]["config"]
        checked = trainer.check_request(name, dict(shown))  # raises on any key without a parser
        assert set(checked) == set(shown), name


def test_values_are_converted_or_refused_by_name():
    assert check_parameters(
        "pce",
        {
            "max_epochs": "5",
            "pretrained": "false",
            "patch_size": "[64, 64, 8]",
            "dataset": ["CacheDataset", "Dataset"],
            "target_spacing": "auto",
        },
        TRAINING_PARAMETERS,
        (32, 32, 8),
    ) == {
        "max_epochs": 5,
        "pretrained": False,
        "patch_size": [64, 64, 8],
        "dataset": "CacheDataset",
        "target_spacing": "auto",
    }
    refusals = [
        ("max_epochs", 0, "must be a whole number, at least 1, got 0"),
        ("max_epochs", "5.5", "must be a whole number, at least 1"),
        ("learning_rate", 0, "must be a number above 0 and at most 1"),
        ("val_split", 1.0, "must be a number at least 0 and below 1"),
        ("pretrained", "yes", "must be true or false"),
        ("device", "gpu", "must be 'cpu', 'cuda' or 'cuda:N'"),
        ("target_spacing", [1, 0, 1], "must be 'auto' or three positive numbers in mm"),
        ("patch_size", [96, 96], "must be three whole numbers of voxels"),
        ("gt_dir", "/no/such/folder", "must be a folder that exists on the server"),
        ("name", "a/b", "must be a plain run name"),
    ]
    for key, value, message in refusals:
        with pytest.raises(RequestError) as e:
            check_parameters("pce", {key: value}, TRAINING_PARAMETERS)
        assert e.value.status_code == 422 and f"training parameter {key!r} of 'pce' {message}" in e.value.detail, (
            e.value.detail
        )
    with pytest.raises(
        RequestError, match=r"multiple of the network's down-sampling \[32, 32, 8\].*e.g. \[96, 96, 8\]"
    ):
        check_parameters("pce", {"patch_size": [96, 96, 12]}, TRAINING_PARAMETERS, (32, 32, 8))
    with pytest.raises(RequestError, match=r"unknown training parameter\(s\) \['epochs'\]"):
        check_parameters("pce", {"epochs": 3, "client_id": "slicer"}, TRAINING_PARAMETERS)
