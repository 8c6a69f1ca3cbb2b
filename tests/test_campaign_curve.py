"""benchmarks/campaign_curve.py reads the release campaign's curve table from docs/release-model.md, the one place
its numbers live, and draws it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def curve():
    return load_benchmark("campaign_curve")


def test_a_cells_minutes_are_the_whole_line_s_and_leave_compiling_out(curve):
    assert curve.minutes("40.1 + 6.1 = 46.2 (+1.1 compiling)") == 46.2
    assert curve.minutes("+24.0 (+3.6 compiling) = 40.1") == 40.1
    assert curve.minutes("16.1 (+6.0 compiling)") == 16.1
    assert curve.minutes("") is None
    assert curve.first_number("**0.412** (0.410 in round 8's run)") == 0.412


def test_the_documented_table_gives_every_round_and_the_bundled_model(curve):
    points = curve.curve_points(curve.DOC.read_text())
    by_label = {curve.short_label(p.label): p for p in points}
    assert all(p.dlib is not None and p.sharpness is not None for p in points)
    bundled = by_label["bundled"]
    assert (bundled.gpu_minutes, bundled.dlib, bundled.sharpness) == (46.2, 0.407, 0.89)
    assert by_label["128 px model"].gpu_minutes is None  # drawn as the dashed reference line
    assert {"2", "9", "11A", "11B", "13A", "13B"} <= set(by_label)
    # every round's line of runs grows from the 128 px model: rounds that continue another sit right of it
    assert by_label["9"].gpu_minutes < by_label["12"].gpu_minutes < by_label["13A"].gpu_minutes


def test_the_figure_is_written_with_both_panels(curve, tmp_path):
    points = curve.curve_points(curve.DOC.read_text())
    out = tmp_path / "curve.webp"
    curve.plot(points, out)
    with Image.open(out) as image:
        assert image.size == (1100, 750)
        # the bundled model's red star is drawn: some pixels are strongly red
        rgb = np.asarray(image.convert("RGB")).astype(int)
    strongly_red = (rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
    assert strongly_red.sum() > 20
