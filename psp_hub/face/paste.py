"""Paste restored aligned faces back into an (upscaled) photo through a feathered face mask, touching only the face."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

from psp_hub.common.geometry import ffhq_template, similarity_scale
from psp_hub.common.images import round_to_uint8


@lru_cache(maxsize=8)
def feather_mask(size: int, feather: float = 0.08) -> np.ndarray:
    """A (size, size) float32 mask: 0 on the outer pixel, rising smoothly (smoothstep) to 1 over `feather` x size."""
    width = max(2.0, feather * size)
    idx = np.arange(size, dtype=np.float32)
    edge = np.minimum(idx, size - 1 - idx)  # distance of each row/column to the nearest border
    dist = np.minimum(edge[:, None], edge[None, :])
    t = np.clip((dist - 1.0) / width, 0.0, 1.0)
    mask = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    mask.setflags(write=False)
    return mask


def face_ellipse(landmarks: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Centre, semi-axes and angle (degrees) of an ellipse covering the face, from its 5 landmarks.

    Scaled from the eye distance and the eye-to-mouth distance; on the FFHQ template it spans the cheeks, the chin
    and the forehead up to the hairline (centre 40 % of the way from the eyes to the mouth, axes 1.0 and 1.3 x).
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes, mouth = (pts[0] + pts[1]) / 2, (pts[3] + pts[4]) / 2
    down = mouth - eyes
    s = max(1e-3, (float(np.linalg.norm(down)) + float(np.linalg.norm(pts[1] - pts[0]))) / 2)
    centre = eyes + 0.4 * down
    angle = float(np.degrees(np.arctan2(down[1], down[0]))) - 90.0
    return (float(centre[0]), float(centre[1])), (1.0 * s, 1.3 * s), angle


def face_mask(size: int, landmarks: np.ndarray | None = None, feather: float = 0.08) -> np.ndarray:
    """(size, size) float32 paste mask: the face ellipse (aligned-crop landmarks; template when None), feathered,
    and 0 near the crop's border so the square itself never shows."""
    pts = ffhq_template(size) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    (cx, cy), (ax, ay), angle = face_ellipse(pts)
    hard = np.zeros((size, size), np.float32)
    sub = 16  # cv2.ellipse takes fixed-point coordinates with 4 fractional bits
    cv2.ellipse(
        hard,
        (round(cx * sub), round(cy * sub)),
        (round(ax * sub), round(ay * sub)),
        angle,
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
        4,
    )
    sigma = max(1.0, 0.5 * feather * size)
    soft = cv2.GaussianBlur(hard, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    soft[soft < 1e-3] = 0.0  # the Gaussian's far tail: exactly 0, so the photo there stays exactly as it was
    return (soft * feather_mask(size, feather)).astype(np.float32)


Scale = float | tuple[float, float]


def crop_to_photo(affine: np.ndarray, scale: Scale = 1.0) -> np.ndarray:
    """The (2, 3) map from aligned-crop pixels to pixels of the photo resized by `scale` (sx, sy; centres kept)."""
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    inv = cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))
    up = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return (up @ np.vstack([inv, [0.0, 0.0, 1.0]]))[:2]


def output_pixels_per_crop_pixel(affine: np.ndarray, scale: Scale = 1.0) -> float:
    """How many output pixels one aligned-crop pixel covers (above 1: the output is finer than the model)."""
    return similarity_scale(crop_to_photo(affine, scale))


def face_region(
    affine: np.ndarray, size: int, out_shape: tuple[int, ...], scale: Scale = 1.0
) -> tuple[int, int, int, int] | None:
    """Bounding box x0, y0, x1, y1 (clipped) that a pasted crop can touch in the output, or None if outside."""
    m = crop_to_photo(affine, scale)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64) - 0.5
    quad = corners @ m[:, :2].T + m[:, 2]
    h, w = out_shape[:2]
    x0, y0 = max(0, int(np.floor(quad[:, 0].min())) - 1), max(0, int(np.floor(quad[:, 1].min())) - 1)
    x1, y1 = min(w, int(np.ceil(quad[:, 0].max())) + 2), min(h, int(np.ceil(quad[:, 1].max())) + 2)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


# (warped restored face, photo region under it, both float32 (h, w, 3)) -> the face to blend in
Blend = Callable[[np.ndarray, np.ndarray], np.ndarray]


def paste_face(
    canvas: np.ndarray,
    face: np.ndarray,
    affine: np.ndarray,
    scale: Scale = 1.0,
    feather: float = 0.08,
    interpolation: int = cv2.INTER_CUBIC,
    mask: np.ndarray | None = None,
    blend: Blend | None = None,
    opacity: float = 1.0,
) -> np.ndarray:
    """Blend one restored crop (S, S, 3) into `canvas` (the photo resized by `scale`) in place; returns canvas.

    `affine` is the photo -> crop similarity from alignment; `mask` (S, S) in [0, 1] says where the face is (default:
    the whole square, feathered); `blend` may combine the warped face with the photo under it (e.g. keep the photo's
    fine detail); `opacity` scales the mask. Pixels where the warped mask is 0 are left exactly as they were.
    """
    size = face.shape[0]
    region = face_region(affine, size, canvas.shape, scale)
    if region is None or opacity <= 0:
        return canvas
    x0, y0, x1, y1 = region
    m = crop_to_photo(affine, scale)
    m[:, 2] -= (x0, y0)
    dsize = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, m, dsize, flags=interpolation, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    weights = feather_mask(size, feather) if mask is None else np.asarray(mask, dtype=np.float32)
    alpha = cv2.warpAffine(weights, m, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = (np.clip(alpha, 0.0, 1.0) * float(opacity))[..., None]
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    if blend is not None:
        warped = blend(warped, roi)
    blended = roi + (warped - roi) * alpha
    canvas[y0:y1, x0:x1] = round_to_uint8(blended)
    return canvas


def paste_faces(
    background: np.ndarray,
    faces: list[tuple[np.ndarray, np.ndarray]],
    scale: Scale = 1.0,
    feather: float = 0.08,
) -> np.ndarray:
    """Paste every (restored crop, photo->crop affine) pair into a copy of `background` (the photo resized by `scale`)."""
    canvas = np.array(background, dtype=np.uint8, copy=True)
    for face, affine in faces:
        paste_face(canvas, np.asarray(face, dtype=np.uint8), affine, scale, feather)
    return canvas
