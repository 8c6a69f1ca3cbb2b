"""Background upscalers for the parts of the photo that are not faces; plain resampling by default, pluggable."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

RESAMPLING = {
    "lanczos": cv2.INTER_LANCZOS4,
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}


class BackgroundUpscaler(Protocol):
    """Anything that resizes an RGB uint8 photo to exactly (height, width); e.g. a Real-ESRGAN wrapper."""

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray: ...


class ResizeUpscaler:
    """Plain OpenCV resampling (Lanczos by default; area averaging when shrinking)."""

    def __init__(self, method: str = "lanczos") -> None:
        if method not in RESAMPLING:
            raise ValueError(f"unknown resampling {method!r}; choose from {tuple(RESAMPLING)}")
        self.method = method

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Resize `image` to `size` = (height, width)."""
        h, w = size
        if (h, w) == image.shape[:2]:
            return image.copy()
        shrink = h < image.shape[0] and w < image.shape[1]
        flag = cv2.INTER_AREA if shrink and self.method != "nearest" else RESAMPLING[self.method]
        return cv2.resize(image, (w, h), interpolation=flag)


def output_size(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """(height, width) of the photo resized by `scale`, at least 1 pixel each."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
