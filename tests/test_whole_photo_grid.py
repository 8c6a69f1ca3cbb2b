"""benchmarks/whole_photo_grid.py's crop: one square around the face, the same for every column, kept whole."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def grid():
    return load_benchmark("whole_photo_grid")


def test_the_square_is_centred_on_the_face_and_margin_times_its_larger_side(grid):
    x0, y0, x1, y1 = grid.face_square(np.array([400.0, 300.0, 600.0, 550.0]), (1000, 1200), margin=1.2)
    assert x1 - x0 == y1 - y0 == 300  # 1.2 x the box's height of 250
    assert (x0 + x1) / 2 == 500 and (y0 + y1) / 2 == 425


def test_a_face_at_the_edge_moves_the_square_inside_instead_of_cutting_it(grid):
    x0, y0, x1, y1 = grid.face_square(np.array([-20.0, 900.0, 180.0, 1100.0]), (1000, 1200), margin=1.5)
    assert (x0, y1) == (0, 1000) and x1 - x0 == y1 - y0 == 300
    # a face larger than the photo: the square is the photo's shorter side, as near the face's centre as fits
    assert grid.face_square(np.array([0.0, 0.0, 900.0, 900.0]), (400, 600), margin=2.0) == (200, 0, 600, 400)
