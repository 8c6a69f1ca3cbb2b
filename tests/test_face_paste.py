"""Paste-back: feathered mask, untouched background outside the face, faithful geometry at any scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from psp_hub.common.imageio import load_image
from psp_hub.face.alignment import align_face
from psp_hub.face.detection import FaceDetector
from psp_hub.face.paste import face_region, feather_mask, paste_face, paste_faces


def test_feather_mask_is_one_inside_zero_at_the_edge_and_smooth():
    m = feather_mask(128)
    assert m.shape == (128, 128) and m.dtype == np.float32
    assert m[64, 64] == pytest.approx(1.0, abs=1e-3)
    assert m[0].max() == 0 and m[:, -1].max() == 0
    row = m[64, :64]
    assert (np.diff(row) >= -1e-6).all()  # rises monotonically towards the centre
    assert np.abs(np.diff(row)).max() < 0.25  # no hard step


@pytest.fixture(scope="module")
def group(weights, samples):
    image = load_image(samples / "photos" / "whole" / "10045.png")
    faces = FaceDetector(weights_dir=weights).detect(image)
    return image, [align_face(image, f.landmarks, 128) for f in faces]


@pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
def test_outside_the_face_regions_nothing_changes(group, scale):
    image, aligned = group
    bg = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LANCZOS4)
    out = paste_faces(bg, [(255 - a.image, a.affine) for a in aligned], scale)
    assert out.shape == bg.shape
    touched = np.zeros(bg.shape[:2], bool)
    for a in aligned:
        x0, y0, x1, y1 = face_region(a.affine, 128, bg.shape, scale)
        touched[y0:y1, x0:x1] = True
        assert (out[y0:y1, x0:x1] != bg[y0:y1, x0:x1]).any()  # the face region did change
    np.testing.assert_array_equal(out[~touched], bg[~touched])


def test_pasting_the_aligned_crop_back_reproduces_the_photo(group):
    image, aligned = group
    bg = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
    out = paste_faces(bg, [(a.image, a.affine) for a in aligned], 2.0)
    for a in aligned:
        x0, y0, x1, y1 = face_region(a.affine, 128, bg.shape, 2.0)
        diff = np.abs(out[y0:y1, x0:x1].astype(int) - bg[y0:y1, x0:x1]).mean()
        assert diff < 3.0  # geometry right: a misplaced paste would differ by tens of levels


@pytest.mark.parametrize("size", [64, 128, 256])
def test_face_mask_covers_the_face_not_the_square(size):
    from psp_hub.common.geometry import ffhq_template
    from psp_hub.face.paste import face_mask

    m = face_mask(size)
    for x, y in ffhq_template(size):  # eyes, nose, mouth corners are fully inside
        assert m[round(y), round(x)] > 0.99
    assert m[: size // 8, : size // 8].max() == 0 and m[-size // 8 :, -size // 8 :].max() == 0  # corners untouched
    assert m[0].max() == 0 and m[:, 0].max() == 0
    assert 0.2 < (m > 0.5).mean() < 0.45


def test_a_masked_paste_changes_nothing_outside_the_mask(group):
    from psp_hub.face.paste import crop_to_photo, face_mask

    image, aligned = group
    bg = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
    out = bg.copy()
    inside = np.zeros(bg.shape[:2], bool)
    for a in aligned:
        mask = face_mask(128)
        paste_face(out, 255 - a.image, a.affine, 2.0, mask=mask)
        inside |= cv2.warpAffine(mask, crop_to_photo(a.affine, 2.0), (bg.shape[1], bg.shape[0])) > 0
    np.testing.assert_array_equal(out[~inside], bg[~inside])
    assert (out[inside] != bg[inside]).any()
