"""pipeline/detail.py's band split on synthetic images: the photo keeps its coarse structure (the model's version of it
moved the person), the model's fine detail goes in where the photo has none, the photo's where it is sharper."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from psp_hub.pipeline.detail import band_sigmas, keep_detail, photo_coarse_sigma

SIZE = 256
INNER = np.s_[48:-48, 48:-48]  # away from the borders' reflections


def _rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, axis=2).astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def scene():
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    photo_coarse = 0.5 + 0.2 * np.sin(xx / 40)
    shift = 0.15 * np.cos(yy / 30)  # the model's own, different coarse structure
    texture = 0.1 * np.sign(np.sin(xx * 1.3) * np.sin(yy * 1.1))  # detail of a few px: only the model has it
    return _rgb(photo_coarse), _rgb(photo_coarse + shift), _rgb(texture)


@pytest.mark.parametrize("upscale", [2.0, 4.0])
def test_the_photo_keeps_its_coarse_structure_and_the_model_adds_detail(scene, upscale):
    photo, model_coarse, texture = scene
    ratio = upscale / 2  # a face of half the model's size in the photo
    out = keep_detail(model_coarse + texture, photo, ratio, upscale)
    big = 4 * photo_coarse_sigma(ratio, upscale)
    moved = np.abs(_blur(model_coarse, big) - _blur(photo, big))[INNER].mean()
    assert np.abs(_blur(out, big) - _blur(photo, big))[INNER].mean() < 0.1 * moved
    fine = band_sigmas(ratio)[0] * 2
    kept = np.abs(out - _blur(out, fine))[INNER].mean() / np.abs(texture - _blur(texture, fine))[INNER].mean()
    assert kept > 0.8


def test_a_sharp_photo_keeps_its_own_detail_over_the_models(scene):
    photo, model_coarse, texture = scene
    sharp = photo + 2.0 * texture[:, ::-1]  # the photo's own detail, twice as strong as the model's
    out = keep_detail(model_coarse + texture, sharp, 1.0, 2.0)
    assert np.abs(out - sharp)[INNER].mean() < 0.1 * np.abs(model_coarse + texture - sharp)[INNER].mean()
