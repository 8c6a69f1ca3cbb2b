"""Face geometry shared by alignment, identity, data and losses: the 5-point templates, the similarity fit, the
landmark order and the eye/mouth boxes.

Landmark order everywhere: 0 image-left eye, 1 image-right eye, 2 nose, 3 image-left mouth corner, 4 image-right
mouth corner; pixel-centre coordinates (pixel i is centred at i).
"""

from __future__ import annotations

import math

import numpy as np

# FFHQ 5-point template at 512 px, as in GFPGAN / facexlib.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# ArcFace (insightface) 5-point template for ARCFACE_SIZE x ARCFACE_SIZE crops, same landmark order.
ARCFACE_SIZE = 112
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# Landmark indices after a horizontal flip, so that index 0 is still the image-left eye.
FLIP_ORDER = [1, 0, 2, 4, 3]
# The boxes component_boxes returns, in this order.
COMPONENTS = ("left_eye", "right_eye", "mouth")
FACE_BOX = (0.25, 0.30, 0.75, 0.85)
"""x0, y0, x1, y1 of the face in an FFHQ-aligned crop (fractions): eyes to chin, no padding, little background. Where
a face's sharpness is measured (the dataset's `sharp_px`) and the evaluation's sharpness ratio."""
SIMILARITY_METHODS = ("umeyama", "lmeds")


def ffhq_template(size: int) -> np.ndarray:
    """The FFHQ template scaled from 512 px to a `size` px crop, float64 (5, 2)."""
    return FFHQ_TEMPLATE_512 * (float(size) / 512.0)


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Closed-form least-squares similarity (Umeyama 1991): rotation without reflection, uniform scale, shift."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / s_c.var(0).sum()
    shift = mu_d - scale * rot @ mu_s
    return np.concatenate([scale * rot, shift[:, None]], axis=1)


def fit_similarity(src: np.ndarray, dst: np.ndarray, method: str = "umeyama") -> np.ndarray:
    """The (2, 3) float64 similarity (rotation, uniform scale, shift) mapping `src` points onto `dst`.

    "umeyama": least squares over all points. "lmeds": OpenCV's least-median fit, as facexlib aligns faces (one
    bad landmark does not pull the crop), falling back to least squares when it gives up.
    """
    if method not in SIMILARITY_METHODS:
        raise ValueError(f"method must be one of {SIMILARITY_METHODS}, got {method!r}")
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2 or not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError(f"need matching finite landmark sets of 2 or more points, got {src.shape} and {dst.shape}")
    if method == "lmeds":
        import cv2  # only the robust fit needs OpenCV

        affine, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if affine is not None and np.isfinite(affine).all() and similarity_scale(affine) >= 1e-6:
            return affine.astype(np.float64)
    return _umeyama(src, dst)


def similarity_scale(affine: np.ndarray) -> float:
    """The isotropic scale of a (2, 3) similarity transform."""
    return float(math.sqrt(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:, :2]))))


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally flipped image (x -> width - 1 - x), float32, re-ordered by FLIP_ORDER.

    Index 0 is still the eye on the image's left (the subject's other eye after a flip), as a detector would
    report on the flipped image.
    """
    out = np.asarray(landmarks, dtype=np.float32).copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out[..., FLIP_ORDER, :]


def component_boxes(
    landmarks: np.ndarray, size: int, eye_box_iod: float = 0.6, mouth_box_width: float = 1.1
) -> np.ndarray:
    """(..., 3, 4) float32 boxes x1, y1, x2, y2 for COMPONENTS from (..., 5, 2) landmarks, clipped to the image.

    Eye boxes are squares centred on each eye with side eye_box_iod x the inter-ocular distance; the mouth box is
    a square centred between the mouth corners with side mouth_box_width x their distance. Any size: the rule is
    relative to the landmarks, `size` only clips.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.shape[-2:] != (5, 2):
        raise ValueError(f"expected (..., 5, 2) landmarks, got {lm.shape}")
    iod = np.linalg.norm(lm[..., 1, :] - lm[..., 0, :], axis=-1).astype(np.float64)
    mouth_w = np.linalg.norm(lm[..., 4, :] - lm[..., 3, :], axis=-1).astype(np.float64)
    centres = np.stack([lm[..., 0, :], lm[..., 1, :], (lm[..., 3, :] + lm[..., 4, :]) / 2.0], axis=-2)
    halves = np.stack([eye_box_iod * iod / 2.0] * 2 + [mouth_box_width * mouth_w / 2.0], axis=-1)
    halves = halves.astype(np.float32)[..., None]
    return np.clip(np.concatenate([centres - halves, centres + halves], axis=-1), 0.0, float(size - 1))
