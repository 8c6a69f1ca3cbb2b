"""Augmented views of a single photo, used as flagged stand-in references for people with one photo."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.nn import functional as F


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


def augmented_views_batch(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`augmented_view` for a (N, 3, S, S) batch in [0, 1] on its own device, each image with its own draws.

    Same ranges: similarity warp (+-12 deg, x0.9-1.1, +-6 % shift, about the centre, mirrored border), flip,
    gain 0.8-1.2 and bias +-20/255 (rounded to 8 bits), Gaussian blur of sigma U(0, 1) x S/128 when above 0.2.
    """
    from .gpu_degradation import blur_batch

    n, _, s, _ = img.shape
    dev = img.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=dev)

    angle, scale = torch.deg2rad(uniform(-12, 12)), uniform(0.9, 1.1)
    shift = torch.stack([uniform(-0.06, 0.06), uniform(-0.06, 0.06)], dim=1) * s
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    gain, bias = uniform(0.8, 1.2), uniform(-20, 20) / 255.0
    sigma = uniform(0.0, 1.0) * s / 128
    # OpenCV's getRotationMatrix2D maps src to dst: dst = A (src - c) + c + shift; sample src = A^-1 (dst - c - shift) + c
    centre = s / 2 - 0.5
    pix = torch.arange(s, device=dev, dtype=torch.float32)
    x = torch.where(flip[:, None], (s - 1) - pix[None], pix[None])  # a flip after the warp reads mirrored columns
    dx = x[:, None, :] - centre - shift[:, 0, None, None]  # (N, 1, S)
    dy = pix[None, :, None] - centre - shift[:, 1, None, None]  # (N, S, 1)
    cos, sin = (torch.cos(angle) / scale)[:, None, None], (torch.sin(angle) / scale)[:, None, None]
    # A = scale * [[cos, sin], [-sin, cos]] (OpenCV's positive angle turns counter-clockwise), A^-1 = [[cos, -sin], [sin, cos]] / scale
    src_x = cos * dx - sin * dy + centre
    src_y = sin * dx + cos * dy + centre
    grid = torch.stack([(2 * src_x + 1) / s - 1, (2 * src_y + 1) / s - 1], dim=-1)
    out = F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out = torch.round((out * gain.view(-1, 1, 1, 1) + bias.view(-1, 1, 1, 1)).clamp(0, 1) * 255) / 255
    blurred = blur_batch(out, torch.where(sigma > 0.2, sigma, torch.zeros_like(sigma)), max_sigma=s / 128)
    return blurred.clamp(0, 1)
