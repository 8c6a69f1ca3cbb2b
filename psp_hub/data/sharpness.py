"""True sharpness of an aligned face: the largest size at which it still carries real detail (`sharp_px`).

Pixel size is not enough: some sources store faces that were upsampled (SCUT's Caucasian set, small web photos),
so a 256 px crop can hold only 128 px of information. Shrinking a crop to s px and back (an ideal, FFT low-pass
resample) loses exactly the face's spectral energy above s's Nyquist frequency; `sharp_px` is the smallest s
that keeps all but `LOSS_SHARE` of the detail finer than a `REFERENCE_PX` face. Measure on a crop larger than the
output size (the builder uses 512 px), since a measure can never exceed the crop it is given.
"""

from __future__ import annotations

import cv2
import numpy as np

from psp_hub.common.geometry import FACE_BOX

REFERENCE_PX = 32
"""Detail finer than a 32 px face (eyes, mouth, hair strands) is what the loss is measured against."""
LOSS_SHARE = 0.01
"""Calibrated on 40 sharp CelebA faces of the shared corpus and 20 London Set / CelebA-HQ photos (see docs/data.md):
128 px faces upsampled to 256 (bicubic or Lanczos) measure 126-132 (median), CelebA-HQ crops at 512 measure 340,
London Set crops at 512 measure 413. Lower shares count resampling leakage as detail (cubic-upsampled 128 px
faces measure 174 at 0.3 %), higher ones call sharp faces soft."""


def _gray(image: np.ndarray) -> np.ndarray:
    """Luma of an RGB (or grey) uint8 image as float32 in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image.astype(np.float32) / 255.0


def _face_region(gray: np.ndarray) -> np.ndarray:
    """The FACE_BOX part of an aligned crop."""
    h, w = gray.shape
    x0, y0, x1, y1 = FACE_BOX
    return gray[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]


def energy_above(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s, E): for crop sizes s in decreasing order, the face's spectral energy a resample to s px would remove."""
    gray = _gray(image)
    size = gray.shape[1]
    region = _face_region(gray)
    h, w = region.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)  # no leakage from the region's edges
    power = np.abs(np.fft.fft2((region - region.mean()) * window)) ** 2
    freq = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)  # cycles per pixel
    s = (2.0 * freq * size).ravel()  # the crop size whose Nyquist frequency this is
    order = np.argsort(s, kind="stable")[::-1]
    return s[order], np.cumsum(power.ravel()[order])


def sharp_px(image: np.ndarray, loss_share: float = LOSS_SHARE) -> int:
    """Largest crop size (px, at most the image's own size) at which this aligned face still has real detail."""
    size = int(np.asarray(image).shape[1])
    if size <= REFERENCE_PX:
        return size
    s, above = energy_above(image)
    total = above[np.searchsorted(-s, -REFERENCE_PX, side="right") - 1]
    if total <= 1e-12:  # a flat image has no detail at any size
        return REFERENCE_PX
    k = int(np.searchsorted(above, loss_share * total))
    return int(min(size, max(REFERENCE_PX, round(float(s[min(k, len(s) - 1)])))))
