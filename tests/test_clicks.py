"""Clicks as scribbles (lib/scribbles/clicks.py): OHIF's per-label voxel indices -> strokes."""

import numpy as np
import pytest

from lib.scribbles.clicks import paint_clicks, parse_clicks
from lib.scribbles.convention import UNANNOTATED


def test_clicks_are_read_per_label_name_and_background(convention):
    request = {"LV": [[1, 2, 3]], "background": [[0, 0, 0], [4, 4, 4]], "rv": [], "result_extension": ".nrrd"}
    clicks = parse_clicks(request, convention, (10, 10, 10))
    assert clicks == {convention.labels["lv"]: [(1, 2, 3)], convention.background_scribble_id: [(0, 0, 0), (4, 4, 4)]}


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"liver": [[1, 1, 1]]}, "no label"),
        ({"lv": [[1, 1, 10]]}, "outside the image"),
        ({"lv": [[-1, 1, 1]]}, "outside the image"),
        ({"lv": [[1.5, 1, 1]]}, "integer"),
        ({"lv": [["a", 1, 1]]}, "integer"),
    ],
)
def test_bad_clicks_are_refused_naming_them(convention, request_, message):
    with pytest.raises(ValueError, match=message):
        parse_clicks(request_, convention, (10, 10, 10))


def test_a_click_paints_a_ball_in_millimetres_over_earlier_strokes():
    scribbles = np.full((21, 21, 5), UNANNOTATED, np.uint8)
    scribbles[10, 10, 2] = 4  # an earlier background stroke where the user now clicks the LV
    out = paint_clicks(scribbles, {1: [(10, 10, 2)]}, spacing=(1.0, 1.0, 8.0), radius_mm=3.0)
    ball = out == 1
    assert out[10, 10, 2] == 1 and scribbles[10, 10, 2] == 4  # painted over, input untouched
    assert ball[:, :, 2].sum() == 29  # the voxels within 3 mm in-plane (1 mm pixels)
    assert not ball[:, :, 1].any() and not ball[:, :, 3].any()  # the next slice is 8 mm away
    corner = paint_clicks(scribbles, {2: [(0, 0, 0)]}, spacing=(1.0, 1.0, 8.0), radius_mm=3.0)
    assert (corner == 2).sum() == 11  # clipped at the border, not wrapped
    assert (paint_clicks(scribbles, {1: [(5, 5, 2)]}, (1.0, 1.0, 8.0), 0.1) == 1).sum() == 1  # at least the voxel
