"""RetinaFace detection on the shared sample photos: faces found, landmarks plausible, order and helpers."""

from __future__ import annotations

import numpy as np
import pytest

from psp_hub.common.imageio import load_image
from psp_hub.face.detection import FaceDetector, center_face, largest_face, resolve_detector_weights


@pytest.fixture(scope="module")
def detector(weights):
    return FaceDetector(weights_dir=weights)


def test_group_photo_has_three_faces_with_sane_landmarks(detector, samples):
    image = load_image(samples / "photos" / "whole" / "10045.png")
    faces = detector.detect(image)
    assert len(faces) == 3
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.9
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert f.box.shape == (4,) and f.landmarks.shape == (5, 2)
        assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
        lm = f.landmarks
        assert (
            (lm[:, 0] > x1 - 5).all()
            and (lm[:, 0] < x2 + 5).all()
            and (lm[:, 1] > y1 - 5).all()
            and (lm[:, 1] < y2 + 5).all()
        )
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left eye / mouth corner are left of the right ones
        assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth


@pytest.mark.parametrize(
    "name", ["Adele_crop.png", "Julia_Roberts_crop.png", "Justin_Timberlake_crop.png", "Paris_Hilton_crop.png"]
)
def test_face_crops_have_one_face(detector, samples, name):
    faces = detector.detect(load_image(samples / "photos" / "cropped" / name))
    assert len(faces) == 1 and faces[0].area > 0.2 * 512 * 512


def test_large_photo_is_detected_at_reduced_size_in_full_coordinates(weights, samples):
    image = load_image(samples / "photos" / "whole" / "00.jpg")  # 1297 x 1920
    full = FaceDetector(weights_dir=weights, max_side=2000).detect(image)
    small = FaceDetector(weights_dir=weights, max_side=960).detect(image)
    assert len(full) == len(small) == 2
    for a, b in zip(sorted(full, key=lambda f: f.box[0]), sorted(small, key=lambda f: f.box[0])):
        assert np.abs(a.box - b.box).max() < 12


def test_no_face_in_a_blank_image(detector):
    assert detector.detect(np.full((300, 400, 3), 127, np.uint8)) == []


def test_largest_and_center_helpers(detector, samples):
    image = load_image(samples / "photos" / "whole" / "Blake_Lively.jpg")
    faces = detector.detect(image)
    assert len(faces) == 2
    big = largest_face(faces)
    assert big.area == max(f.area for f in faces)
    mid = center_face(faces, image.shape)
    centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
    assert np.linalg.norm(mid.center - centre) == min(np.linalg.norm(f.center - centre) for f in faces)
    assert largest_face([]) is None and center_face([], image.shape) is None


def test_wrong_input_is_a_clear_error(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((10, 10), np.float32))


def test_missing_weights_offline_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PSP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="detection_mobilenet0.25_Final.pth not found"):
        resolve_detector_weights(tmp_path)
