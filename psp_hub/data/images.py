"""Decode and resize face images (OpenCV for speed; RGB uint8 out); common.images.image_to_tensor makes tensors."""

from __future__ import annotations

import cv2
import numpy as np


def decode_rgb(data: bytes) -> np.ndarray:
    """RGB uint8 (H, W, 3) from encoded bytes (WebP / PNG / JPEG); raises ValueError on a bad image."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("could not decode image bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a square image to size x size (area filter down, bicubic up)."""
    h = img.shape[0]
    if h == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if size < h else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)


def scale_points(points: np.ndarray, src_size: int, dst_size: int) -> np.ndarray:
    """Map pixel-centre coordinates (pixel i centred at i) from a src_size to a dst_size image."""
    if src_size == dst_size:
        return points.astype(np.float32)
    return ((points + 0.5) * (dst_size / src_size) - 0.5).astype(np.float32)
