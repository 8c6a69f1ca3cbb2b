"""FFHQ alignment: the template, landmark fit, FFHQ-style blurred padding, and shrink-before-warp."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from psp_hub.common.geometry import ffhq_template, similarity_scale
from psp_hub.common.imageio import load_image
from psp_hub.face.alignment import align_face
from psp_hub.face.detection import FaceDetector

TEMPLATE_512 = [
    [192.98138, 239.94708],
    [318.90277, 240.1936],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
]


@pytest.fixture(scope="module")
def detector(weights):
    return FaceDetector(weights_dir=weights)


def test_template_is_the_gfpgan_one_scaled():
    np.testing.assert_allclose(ffhq_template(512), TEMPLATE_512, rtol=1e-6)
    np.testing.assert_allclose(ffhq_template(128), np.array(TEMPLATE_512) / 4, rtol=1e-6)
    # the shared corpus's documented 128 px landmarks
    np.testing.assert_allclose(ffhq_template(128)[0], [48.25, 59.99], atol=0.01)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_landmarks_land_on_the_template(detector, samples, size):
    image = load_image(samples / "photos" / "whole" / "10045.png")
    for face in detector.detect(image):
        al = align_face(image, face.landmarks, size)
        assert al.image.shape == (size, size, 3) and al.image.dtype == np.uint8
        assert al.affine.shape == (2, 3)
        mapped = face.landmarks @ al.affine[:, :2].T + al.affine[:, 2]
        assert np.abs(mapped - ffhq_template(size)).mean() < 0.04 * size  # a similarity fits 5 points closely


def test_known_similarity_is_recovered_exactly():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (400, 500, 3), dtype=np.uint8)
    angle, scale, shift = 0.3, 1.7, np.array([180.0, 150.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ffhq_template(128) @ rot.T + shift  # template placed in the photo
    al = align_face(photo, landmarks, 128, padding="constant")
    inv = cv2.invertAffineTransform(al.affine)
    np.testing.assert_allclose(inv[:, :2], rot, atol=1e-4)
    np.testing.assert_allclose(inv[:, 2], shift, atol=1e-3)
    assert similarity_scale(al.affine) == pytest.approx(1 / scale, rel=1e-5)


def test_blur_padding_fills_outside_the_photo_without_black(detector, samples):
    image = load_image(samples / "photos" / "cropped" / "Justin_Timberlake_crop.png")[150:, 130:]
    face = detector.detect(image)[0]
    blur = align_face(image, face.landmarks, 128, padding="blur").image.astype(float)
    const = align_face(image, face.landmarks, 128, padding="constant").image.astype(float)
    refl = align_face(image, face.landmarks, 128, padding="reflect").image.astype(float)
    corner = (slice(0, 12), slice(0, 12))  # far outside the photo (top-left was cut away)
    assert const[corner].max() == 0
    assert blur[corner].min() > 20
    median = np.median(image.reshape(-1, 3), axis=0)
    assert (
        np.abs(blur[corner].mean(axis=(0, 1)) - median).max()
        < np.abs(refl[corner].mean(axis=(0, 1)) - median).max() + 1
    )
    # inside the photo (bottom-right of the crop) all paddings agree
    inner = (slice(100, 120), slice(100, 120))
    assert np.abs(blur[inner] - const[inner]).mean() < 2.0


def test_shrinking_a_big_face_matches_aligning_the_small_photo(detector, samples):
    small = load_image(samples / "photos" / "cropped" / "Adele_crop.png")
    big = cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    face = detector.detect(small)[0]
    a = align_face(small, face.landmarks, 128).image.astype(float)
    big_landmarks = (face.landmarks + 0.5) * 4 - 0.5
    b = align_face(big, big_landmarks, 128).image.astype(float)
    assert np.abs(a - b).mean() < 4.0


def test_bad_inputs_are_clear_errors():
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="padding"):
        align_face(img, ffhq_template(64), 64, padding="wrap")
    with pytest.raises(ValueError, match="landmark"):
        align_face(img, np.full((5, 2), np.nan), 64)
