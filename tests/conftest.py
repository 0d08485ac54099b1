import os
import sys

import pytest

from live_server import APP_DIR, LiveServer, copy_app

sys.path.insert(0, APP_DIR)  # the app's `lib` package, as the server sees it

from lib.datasets.sample import build_studies  # noqa: E402
from lib.scribbles.convention import ScribbleConvention  # noqa: E402


@pytest.fixture(scope="session")
def convention():
    return ScribbleConvention({"lv": 1, "myocardium": 2, "rv": 3})


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """Six phantoms, three with simulated scribbles saved as ``final`` (a small copy of the sample)."""
    root = str(tmp_path_factory.mktemp("sample"))
    build_studies(root, "phantoms", n=6, scribbled=3, seed=0)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_root):
    """The real server on the sample studies, one per test module (studies copied: tests write)."""
    import shutil

    work = str(tmp_path_factory.mktemp("server"))
    studies = shutil.copytree(os.path.join(sample_root, "studies"), os.path.join(work, "studies"))
    app = copy_app(os.path.join(work, "app"))
    conf = {"models": "all", "unet2d_features": "[16, 32, 64, 128]", "zscribbleseg_prior_start_epoch": "1"}
    with LiveServer(app, studies, conf=conf, workdir=work) as s:
        s.studies, s.app_dir = studies, app
        yield s
