"""Never softer than the input: with the bundled model, every face keeps >= 0.9x the detail of a Lanczos resize."""

from __future__ import annotations

import numpy as np
import pytest

from psp_hub.common.imageio import load_image
from psp_hub.pipeline import RestorationPipeline
from psp_hub.pipeline.background import ResizeUpscaler, output_size
from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("never_worse")


@pytest.fixture(scope="module")
def pipe():
    pipe = RestorationPipeline.from_pretrained(device="cpu")
    assert pipe.info.trained, f"needs the trained bundled model (or PSP_MODEL): {pipe.info.message}"
    return pipe


# small faces of an old group photo, a large clean face crop, and sharp in-the-wild faces (0.02-0.75x before)
PHOTOS = [
    "photos/whole/10045.png",
    "photos/cropped/Paris_Hilton_crop.png",
    "references/celeba_7256/000114.jpg",
    "references/celeba_7399/004668.jpg",
]


@pytest.mark.parametrize("photo", PHOTOS)
def test_every_face_keeps_the_detail_of_a_lanczos_resize(bench, pipe, samples, photo):
    rows = bench.measure_photo(pipe, samples / photo, [1.0, 2.0])
    assert rows and {r["scale"] for r in rows} == {1.0, 2.0}
    for r in rows:
        assert r["detail"] >= 0.9, r  # variance of the Laplacian in the face box, output / Lanczos
        assert r["ring"] < 1.0, r  # the wall around the face does not change colour


def test_large_faces_are_flagged_and_can_be_left_untouched(pipe, samples):
    # this crop's face spans ~2x the 256 px model's size (~4x the 128 px one's): "far larger" set to 1.5x here
    path = samples / "photos" / "cropped" / "Paris_Hilton_crop.png"
    restored = pipe.restore(path, upscale=2, large_face_ratio=1.5)
    assert restored.faces[0].large and any(f"the model's {pipe.size} px" in w for w in restored.warnings)
    assert not pipe.restore(path, upscale=2).faces[0].large  # under the default 3x
    kept = pipe.restore(path, upscale=2, large_faces="keep", large_face_ratio=1.5)
    image = load_image(path)
    lanczos = ResizeUpscaler("lanczos")(image, output_size(image.shape, 2))
    np.testing.assert_array_equal(kept.image, lanczos)
    assert not kept.faces[0].pasted and any("left untouched" in w for w in kept.warnings)
    assert kept.report["faces"][0]["pasted"] is False
