"""sharp_px: upsampled faces measure at the size they came from, sharp ones at their full size."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from psp_hub.data.sharpness import REFERENCE_PX, sharp_px


def _resample(image: np.ndarray, via: int, to: int, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Shrink to `via` px (area) and enlarge to `to` px: a face whose real detail stops at `via`."""
    small = cv2.resize(image, (via, via), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (to, to), interpolation=interpolation)


@pytest.fixture(scope="module")
def sharp_corpus_faces(faces) -> list[np.ndarray]:
    """Twelve CelebA faces of the shared corpus whose crop spans >= 300 source px: sharp at 128."""
    with (faces / "metadata.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "celeba" and int(r["crop_px_in_source"]) >= 300][:12]
    return [cv2.cvtColor(cv2.imread(str(faces / r["file_name"])), cv2.COLOR_BGR2RGB) for r in rows]


def test_corpus_face_upsampled_to_256_measures_about_128(sharp_corpus_faces):
    native = [sharp_px(im) for im in sharp_corpus_faces]
    cubic = [sharp_px(cv2.resize(im, (256, 256), interpolation=cv2.INTER_CUBIC)) for im in sharp_corpus_faces]
    lanczos = [sharp_px(cv2.resize(im, (256, 256), interpolation=cv2.INTER_LANCZOS4)) for im in sharp_corpus_faces]
    to512 = [sharp_px(cv2.resize(im, (512, 512), interpolation=cv2.INTER_CUBIC)) for im in sharp_corpus_faces]
    assert np.median(native) >= 115 and max(native) <= 128  # never above the crop's own size
    for measured in (cubic, lanczos, to512):
        assert 105 <= np.median(measured) <= 150, measured  # pixel size 256 / 512, real detail ~128
    softer = [sharp_px(_resample(im, 80, 256)) for im in sharp_corpus_faces]
    assert np.median(softer) < np.median(cubic) - 15  # less real detail measures lower


def _pink_noise(size: int, seed: int = 0) -> np.ndarray:
    """A grey image with a 1/f amplitude spectrum up to Nyquist: real detail at every scale."""
    rng = np.random.default_rng(seed)
    f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2)
    spectrum = rng.normal(size=(size, size)) * np.where(f > 0, 1.0 / np.maximum(f, 1e-6), 0.0)
    img = np.real(np.fft.ifft2(np.fft.fft2(np.real(np.fft.ifft2(spectrum)))))
    img = (img - img.mean()) / img.std() * 40 + 128
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_full_band_detail_measures_the_full_size_and_resampling_lowers_it():
    sharp = _pink_noise(256)
    assert sharp_px(sharp) >= 230
    via128 = sharp_px(_resample(sharp, 128, 256))
    via64 = sharp_px(_resample(sharp, 64, 256))
    # noise keeps far more energy near Nyquist than a face, so the bicubic leakage above the cut shows more
    assert 125 <= via128 <= 175
    assert 60 <= via64 <= 100
    assert sharp_px(_pink_noise(512, seed=1)) >= 460


def test_flat_and_tiny_images():
    assert sharp_px(np.full((256, 256, 3), 90, np.uint8)) == REFERENCE_PX
    assert sharp_px(np.zeros((24, 24, 3), np.uint8)) == 24
    grey = cv2.cvtColor(_pink_noise(128), cv2.COLOR_RGB2GRAY)
    assert sharp_px(grey) == sharp_px(_pink_noise(128))  # grey input is accepted and measured the same
