"""Eq. (10) of the paper, x = [(y * k_sigma) down_r + n_delta]_JPEG_q, then GFPGAN's colour jitter and grey."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from psp_hub.common.images import round_to_uint8

from .config import DegradationConfig


@dataclass(frozen=True)
class DegradationParams:
    """The draws of one degradation, reported with every sample (so tests and logs can check the ranges)."""

    sigma_nominal: float  # drawn in DegradationConfig.blur_sigma, stated at reference_size px
    sigma: float  # applied at the output size: sigma_nominal * out_size / reference_size
    scale: float  # downsampling factor r
    noise: float  # Gaussian noise std on the 0..255 scale
    jpeg_quality: int
    jitter: bool
    brightness: float
    contrast: float
    saturation: float
    hue: float
    gray: bool

    def as_floats(self) -> dict[str, float]:
        """All fields as floats (booleans as 0/1), for collation into (B,) tensors."""
        return {k: float(v) for k, v in asdict(self).items()}


def sample_degradation(cfg: DegradationConfig, rng: np.random.Generator, out_size: int) -> DegradationParams:
    """Draw one set of parameters; every field is always drawn so the draws never shift between samples."""
    sigma_nominal = float(rng.uniform(*cfg.blur_sigma))
    scale = float(rng.uniform(*cfg.downsample))
    noise = float(rng.uniform(*cfg.noise))
    jpeg = int(rng.integers(int(cfg.jpeg_quality[0]), int(cfg.jpeg_quality[1]) + 1))
    jitter = bool(rng.random() < cfg.color_jitter_prob)
    brightness = float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
    contrast = float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
    saturation = float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation))
    hue = float(rng.uniform(-cfg.hue, cfg.hue))
    gray = bool(rng.random() < cfg.gray_prob)
    return DegradationParams(
        sigma_nominal=sigma_nominal,
        sigma=sigma_nominal * out_size / cfg.reference_size,
        scale=scale,
        noise=noise,
        jpeg_quality=jpeg,
        jitter=jitter,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        gray=gray,
    )


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur k_sigma (kernel side 2*ceil(3 sigma)+1, reflected border), uint8 or float."""
    if sigma < 1e-3:
        return img
    k = 2 * math.ceil(3 * sigma) + 1
    return cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode float RGB [0, 1] as JPEG at `quality` and decode it again."""
    u8 = round_to_uint8(img * 255.0)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def color_jitter(img: np.ndarray, p: DegradationParams) -> np.ndarray:
    """Brightness, contrast, saturation, hue (torchvision functional ops, fixed order) on float RGB [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    t = TF.adjust_brightness(t, p.brightness)
    t = TF.adjust_contrast(t, p.contrast)
    t = TF.adjust_saturation(t, p.saturation)
    t = TF.adjust_hue(t, p.hue)
    return t.clamp_(0, 1).numpy().transpose(1, 2, 0)


def to_gray(img: np.ndarray) -> np.ndarray:
    """Grey RGB image (same shape)."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.repeat(g[:, :, None], 3, axis=2)


def degrade(hr: np.ndarray, p: DegradationParams, rng: np.random.Generator) -> np.ndarray:
    """Degrade an RGB uint8 S x S target: blur, downsample by r, noise, JPEG, resize back to S (as GFPGAN), jitter, grey.

    Returns float32 RGB in [0, 1] at the target's size; `rng` draws only the noise.
    """
    size = hr.shape[0]
    # blur and resize on uint8 (OpenCV's fast fixed-point path): the JPEG step quantises to 8 bits anyway
    img = gaussian_blur(np.ascontiguousarray(hr), p.sigma)
    low = max(2, round(size / p.scale))
    img = cv2.resize(img, (low, low), interpolation=cv2.INTER_LINEAR).astype(np.float32) / np.float32(255.0)
    if p.noise > 0:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(p.noise / 255.0)
        img = np.clip(img, 0.0, 1.0)
    img = jpeg_roundtrip(img, p.jpeg_quality)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    if p.jitter:
        img = color_jitter(img, p)
    if p.gray:
        img = to_gray(img)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
