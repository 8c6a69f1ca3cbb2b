"""Fine detail of a face: variance of the Laplacian of its grey face region, and its ratio output over target.

A restored face can match the target in PSNR and still be soft (a resize of a smaller model's output) or carry
invented texture; the ratio says which: about 1 = as much fine detail as the target, far below 1 = blurred,
far above 1 = noise or hallucinated texture. Measured on uint8 images, as saved, like the identity metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..common.geometry import FACE_BOX

EPS = 1e-6
"""Floor of a target's variance: a flat target (no detail at all) would otherwise divide by zero."""


def laplacian_variance(image: np.ndarray, box: Sequence[float]) -> float:
    """Variance of the 3x3 Laplacian (OpenCV ksize 3) of the luma of an RGB uint8 image inside box (x0, y0, x1, y1).

    The box is clipped to the image. This is the detail measure of benchmarks/never_worse.py.
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    luma = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(luma, cv2.CV_32F, ksize=3).var())


def face_box(size: int) -> tuple[float, float, float, float]:
    """The eyes-to-chin box of an FFHQ-aligned crop of this size (the box `sharp_px` is measured in)."""
    x0, y0, x1, y1 = FACE_BOX
    return x0 * size, y0 * size, x1 * size, y1 * size


def face_detail(image: np.ndarray) -> float:
    """Laplacian variance of the face region of one FFHQ-aligned RGB uint8 crop."""
    return laplacian_variance(image, face_box(image.shape[1]))


def sharpness_ratio(pred: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) face detail of each aligned crop over that of its target; 1 = as much fine detail as the target."""
    if len(pred) != len(target):
        raise ValueError(f"got {len(pred)} predictions and {len(target)} targets")
    return np.array([face_detail(p) / max(face_detail(t), EPS) for p, t in zip(pred, target)], dtype=np.float64)


def geometric_mean(ratios: Sequence[float]) -> float:
    """Mean of ratios on a log scale: x2 and x0.5 cancel, as the aim band 0.8..1.25 (= 1/0.8) asks."""
    values = np.asarray(ratios, dtype=np.float64)
    return float(np.exp(np.mean(np.log(np.maximum(values, EPS)))))


def component_detail(image: np.ndarray, boxes: Sequence[Sequence[float]]) -> float:
    """Mean Laplacian variance inside the eye and mouth boxes (common.geometry.component_boxes) of one RGB uint8
    crop: where speckle hides when the whole face measures about right. Each box counts the same, whatever its size."""
    return float(np.mean([laplacian_variance(image, box) for box in boxes]))


def component_sharpness_ratio(
    pred: Sequence[np.ndarray], target: Sequence[np.ndarray], boxes: Sequence[np.ndarray]
) -> np.ndarray:
    """(N,) detail inside each face's eye and mouth boxes (N, 3, 4), output over target; 1 = as much as the target."""
    if not len(pred) == len(target) == len(boxes):
        raise ValueError(f"got {len(pred)} predictions, {len(target)} targets and {len(boxes)} box sets")
    return np.array(
        [component_detail(p, b) / max(component_detail(t, b), EPS) for p, t, b in zip(pred, target, boxes)],
        dtype=np.float64,
    )
