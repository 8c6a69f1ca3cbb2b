"""Eye and mouth boxes for the component (ROI) discriminators, and landmark flipping that keeps left = image-left."""

from __future__ import annotations

import numpy as np

# Landmark order everywhere: 0 image-left eye, 1 image-right eye, 2 nose, 3 image-left mouth corner, 4 image-right.
FLIP_ORDER = [1, 0, 2, 4, 3]


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally flipped image (pixel-centre convention: x -> width - 1 - x).

    Points are re-ordered so index 0 is still the eye on the image's left (the subject's other eye after a flip),
    matching what a detector would report on the flipped image.
    """
    out = np.asarray(landmarks, dtype=np.float32).copy()
    out[:, 0] = (width - 1) - out[:, 0]
    return out[FLIP_ORDER]


def component_boxes(landmarks: np.ndarray, size: int, eye_box_iod: float = 0.6, mouth_box_width: float = 1.1) -> np.ndarray:
    """(3, 4) float32 boxes x1, y1, x2, y2 for [image-left eye, image-right eye, mouth], clipped to the image.

    Eye boxes are squares centred on each eye with side eye_box_iod x inter-ocular distance; the mouth box is a
    square centred between the mouth corners with side mouth_box_width x their distance.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    iod = float(np.linalg.norm(lm[1] - lm[0]))
    mouth_w = float(np.linalg.norm(lm[4] - lm[3]))
    centres = [lm[0], lm[1], (lm[3] + lm[4]) / 2.0]
    halves = [eye_box_iod * iod / 2.0] * 2 + [mouth_box_width * mouth_w / 2.0]
    boxes = np.array([[c[0] - h, c[1] - h, c[0] + h, c[1] + h] for c, h in zip(centres, halves)], dtype=np.float32)
    return np.clip(boxes, 0.0, float(size - 1))
