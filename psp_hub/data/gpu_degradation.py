"""Eq. (10) and GFPGAN's colour jitter and grey for a whole batch in torch, on the device that trains.

The same degradation as `degradation.degrade` (one image at a time with OpenCV, in the loader's CPU workers), with
every image's own blur sigma, scale, noise, JPEG quality and jitter: blur by per-image separable Gaussian kernels,
OpenCV-style bilinear resizes as one `grid_sample` onto a shared canvas (each image in its top-left corner, edges
replicated, as a JPEG encoder pads), the JPEG round trip of `jpeg.py`, and torchvision's colour operations with
per-image factors. tests/test_gpu_degradation.py checks it against the CPU path on real faces.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .config import DegradationConfig
from .jpeg import MCU, jpeg_batch

PARAM_KEYS = (
    "sigma_nominal",
    "sigma",
    "scale",
    "noise",
    "jpeg_quality",
    "jitter",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "gray",
)  # the fields of DegradationParams, in its order
_GRAY_TV = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (inside adjust_contrast / adjust_saturation)
_GRAY_CV = (0.299, 0.587, 0.114)  # OpenCV's COLOR_RGB2GRAY (the final grey step)


def sample_degradation_batch(cfg: DegradationConfig, n: int, out_size: int, generator: torch.Generator) -> dict:
    """(n,) float tensors of every DegradationParams field, drawn from the same ranges as `sample_degradation`."""
    dev = generator.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=dev)

    p = {"sigma_nominal": uniform(*cfg.blur_sigma), "scale": uniform(*cfg.downsample), "noise": uniform(*cfg.noise)}
    q0, q1 = int(cfg.jpeg_quality[0]), int(cfg.jpeg_quality[1])
    p["jpeg_quality"] = torch.randint(q0, q1 + 1, (n,), generator=generator, device=dev).float()
    p["jitter"] = (torch.rand(n, generator=generator, device=dev) < cfg.color_jitter_prob).float()
    p["brightness"] = uniform(1 - cfg.brightness, 1 + cfg.brightness)
    p["contrast"] = uniform(1 - cfg.contrast, 1 + cfg.contrast)
    p["saturation"] = uniform(1 - cfg.saturation, 1 + cfg.saturation)
    p["hue"] = uniform(-cfg.hue, cfg.hue)
    p["gray"] = (torch.rand(n, generator=generator, device=dev) < cfg.gray_prob).float()
    p["sigma"] = p["sigma_nominal"] * out_size / cfg.reference_size
    return {k: p[k] for k in PARAM_KEYS}


def blur_batch(img: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Per-image isotropic Gaussian blur, OpenCV's kernel (radius ceil(3 sigma), reflect-101 border).

    All kernels share the radius of `max_sigma` (a static shape: no host sync), with zero taps past each image's
    own radius; sigma < 1e-3 leaves the image unchanged, as in `gaussian_blur`.
    """
    b, c, h, w = img.shape
    radius = max(1, min(math.ceil(3 * max_sigma), h - 1, w - 1))
    taps = torch.arange(-radius, radius + 1, device=img.device, dtype=torch.float32)
    s = sigma.float().clamp_min(1e-4)[:, None]
    kernel = torch.exp(-(taps**2) / (2 * s**2)) * (taps.abs() <= torch.ceil(3 * s))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0).to(img.dtype)  # (B*C, K)
    x = img.reshape(1, b * c, h, w)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=b * c)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * c)
    return x.reshape(b, c, h, w)


def _resize_grid(out_side: int, src_side: int, src_valid: torch.Tensor, dst_valid: torch.Tensor) -> torch.Tensor:
    """grid_sample grid (B, out, out, 2) for OpenCV INTER_LINEAR from each image's src_valid-px corner of a
    src_side canvas to a dst_valid-px one (positions past dst_valid repeat its last pixel: edge replication)."""
    pos = torch.arange(out_side, device=src_valid.device, dtype=torch.float32)[None, :]
    pos = torch.minimum(pos, dst_valid[:, None] - 1)
    u = (pos + 0.5) * (src_valid / dst_valid)[:, None] - 0.5  # OpenCV's pixel-centre mapping
    u = torch.minimum(u.clamp_min(0), src_valid[:, None] - 1)  # border replicate
    g = (2 * u + 1) / src_side - 1  # (B, out), normalised for align_corners=False
    return torch.stack([g[:, None, :].expand(-1, out_side, -1), g[:, :, None].expand(-1, -1, out_side)], dim=-1)


def _resample(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def _gray(img: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    r, g, b = img.unbind(1)  # python-float weights: no constant tensor to copy to the device on every call
    return (weights[0] * r + weights[1] * g + weights[2] * b)[:, None]


def color_jitter_batch(img: torch.Tensor, p: dict) -> torch.Tensor:
    """torchvision's adjust_brightness, _contrast, _saturation, _hue (that order) with per-image factors."""
    from kornia.color import hsv_to_rgb, rgb_to_hsv

    col = lambda v: v.to(img.dtype).view(-1, 1, 1, 1)
    x = (img * col(p["brightness"])).clamp(0, 1)
    mean = _gray(x, _GRAY_TV).mean(dim=(1, 2, 3), keepdim=True)
    x = (col(p["contrast"]) * x + (1 - col(p["contrast"])) * mean).clamp(0, 1)
    x = (col(p["saturation"]) * x + (1 - col(p["saturation"])) * _gray(x, _GRAY_TV)).clamp(0, 1)
    hsv = rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, :1] + 2 * math.pi * col(p["hue"]), 2 * math.pi)
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1)).clamp(0, 1)


def to_gray_batch(img: torch.Tensor) -> torch.Tensor:
    """Grey RGB (OpenCV's weights), same shape."""
    return _gray(img, _GRAY_CV).expand_as(img).contiguous()


def degrade_batch(hr: torch.Tensor, p: dict, cfg: DegradationConfig, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) targets in [0, 1] -> degraded inputs in [0, 1], with `p` from sample_degradation_batch.

    `cfg` gives the static bounds (largest sigma, smallest scale); `generator` draws the noise.
    """
    size = hr.shape[-1]
    x = blur_batch(hr.float(), p["sigma"], cfg.blur_sigma[1] * size / cfg.reference_size)
    low = torch.clamp(torch.round(size / p["scale"]), min=2).float()  # each image's side after downsampling by r
    canvas = MCU * math.ceil(max(2, round(size / cfg.downsample[0])) / MCU)
    full = torch.full_like(low, float(size))
    x = _resample(x, _resize_grid(canvas, size, full, low))
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x = (x + noise * (p["noise"] / 255.0).view(-1, 1, 1, 1)).clamp(0, 1)
    x = jpeg_batch(x, p["jpeg_quality"])
    x = _resample(x, _resize_grid(size, canvas, low, full))
    jitter, gray = p["jitter"].view(-1, 1, 1, 1) > 0, p["gray"].view(-1, 1, 1, 1) > 0
    x = torch.where(jitter, color_jitter_batch(x, p), x)
    x = torch.where(gray, to_gray_batch(x), x)
    return x.clamp(0, 1)
