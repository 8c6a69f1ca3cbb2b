"""Faithful colour: give the restored face the input face's colour statistics, so grey stays grey and skin keeps its tone."""

from __future__ import annotations

import cv2
import numpy as np

from psp_hub.common.images import round_to_uint8

MAX_CHROMA_GAIN = 2.0  # a desaturated restoration of a colourful face may gain at most this much saturation


def _weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of x (H, W, C) under weights w (H, W)."""
    total = max(float(w.sum()), 1e-6)
    mean = (x * w[..., None]).sum(axis=(0, 1)) / total
    var = (((x - mean) ** 2) * w[..., None]).sum(axis=(0, 1)) / total
    return mean, np.sqrt(np.maximum(var, 0.0))


def match_colour(restored: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`restored` (S, S, 3) uint8 with the colour of `source` (the aligned input face) inside `mask` (S, S).

    In YCrCb: the luma mean is moved to the input's (the restoration keeps its own contrast and detail); each chroma
    channel gets the input's mean and standard deviation, so a face with no chroma (a greyscale photo) comes out
    with none and the restoration cannot tint skin, lips or eyes away from the photo's colours.
    """
    w = np.asarray(mask, dtype=np.float32)
    ycc_r = cv2.cvtColor(np.asarray(restored, np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    ycc_s = cv2.cvtColor(np.asarray(source, np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    mean_r, std_r = _weighted_stats(ycc_r, w)
    mean_s, std_s = _weighted_stats(ycc_s, w)
    out = ycc_r.copy()
    out[..., 0] += mean_s[0] - mean_r[0]
    gain = np.clip(std_s[1:] / np.maximum(std_r[1:], 1e-3), 0.0, MAX_CHROMA_GAIN)
    out[..., 1:] = (ycc_r[..., 1:] - mean_r[1:]) * gain + mean_s[1:]
    return cv2.cvtColor(round_to_uint8(out), cv2.COLOR_YCrCb2RGB)


def chroma(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 |Cr - 128| + |Cb - 128| of an RGB uint8 image: 0 for grey pixels."""
    ycc = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    return np.abs(ycc[..., 1:] - 128.0).sum(axis=2)
