"""Paste restored aligned faces back into an (upscaled) photo through a feathered mask, touching only the face region."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


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


Scale = float | tuple[float, float]


def crop_to_photo(affine: np.ndarray, scale: Scale = 1.0) -> np.ndarray:
    """The (2, 3) map from aligned-crop pixels to pixels of the photo resized by `scale` (sx, sy; centres kept)."""
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    inv = cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))
    up = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return (up @ np.vstack([inv, [0.0, 0.0, 1.0]]))[:2]


def face_region(affine: np.ndarray, size: int, out_shape: tuple[int, ...], scale: Scale = 1.0) -> tuple[int, int, int, int] | None:
    """Bounding box x0, y0, x1, y1 (clipped) that a pasted crop can touch in the output, or None if outside."""
    m = crop_to_photo(affine, scale)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64) - 0.5
    quad = corners @ m[:, :2].T + m[:, 2]
    h, w = out_shape[:2]
    x0, y0 = max(0, int(np.floor(quad[:, 0].min())) - 1), max(0, int(np.floor(quad[:, 1].min())) - 1)
    x1, y1 = min(w, int(np.ceil(quad[:, 0].max())) + 2), min(h, int(np.ceil(quad[:, 1].max())) + 2)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def paste_face(
    canvas: np.ndarray,
    face: np.ndarray,
    affine: np.ndarray,
    scale: Scale = 1.0,
    feather: float = 0.08,
    interpolation: int = cv2.INTER_CUBIC,
) -> np.ndarray:
    """Blend one restored crop (S, S, 3) into `canvas` (the photo resized by `scale`) in place; returns canvas.

    `affine` is the photo -> crop similarity from alignment. Pixels outside the warped crop are left untouched.
    """
    size = face.shape[0]
    region = face_region(affine, size, canvas.shape, scale)
    if region is None:
        return canvas
    x0, y0, x1, y1 = region
    m = crop_to_photo(affine, scale)
    m[:, 2] -= (x0, y0)
    dsize = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, m, dsize, flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(feather_mask(size, feather), m, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = alpha[..., None]
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    blended = roi + (warped.astype(np.float32) - roi) * alpha
    canvas[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
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
