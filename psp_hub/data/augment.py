"""Augmented views of a single photo, used as flagged stand-in references for people with one photo."""

from __future__ import annotations

import cv2
import numpy as np


def augmented_view(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A different-looking view of the same face: similarity warp (+-12 deg, x0.9-1.1, +-6 % shift), flip, light, blur.

    Strong enough that the network cannot copy the target pixel for pixel from it, mild enough to keep identity.
    """
    size = img.shape[0]
    angle = rng.uniform(-12, 12)
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.06, 0.06, size=2) * size
    m = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle, scale)
    m[:, 2] += shift
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    out = np.ascontiguousarray(out)
    out = cv2.addWeighted(out, gain, out, 0.0, bias)  # gain and bias with saturation to 0..255, in uint8
    sigma = rng.uniform(0.0, 1.0) * size / 128
    if sigma > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    return np.ascontiguousarray(out)
