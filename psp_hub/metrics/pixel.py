"""Per-image PSNR and SSIM on RGB tensors, computed on the [0, 1] scale."""

from __future__ import annotations

import torch
from kornia.metrics import ssim as kornia_ssim


def _to_unit(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map images from value_range to [0, 1] in fp32 and clamp (as a saved image would be)."""
    lo, hi = value_range
    return ((x.float() - lo) / (hi - lo)).clamp(0.0, 1.0)


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border > 0 else x


def psnr(
    pred: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), crop_border: int = 0
) -> torch.Tensor:
    """PSNR in dB per image, (B,), of (B, C, H, W) images given in value_range (default [-1, 1]); MSE on [0, 1]."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    p, t = _crop(_to_unit(pred, value_range), crop_border), _crop(_to_unit(target, value_range), crop_border)
    mse = (p - t).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    value_range: tuple[float, float] = (-1.0, 1.0),
    crop_border: int = 0,
    window_size: int = 11,
) -> torch.Tensor:
    """SSIM per image, (B,): Gaussian window 11 / sigma 1.5 (Wang et al.), valid region only, mean over RGB."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    p, t = _crop(_to_unit(pred, value_range), crop_border), _crop(_to_unit(target, value_range), crop_border)
    ssim_map = kornia_ssim(p, t, window_size, max_val=1.0, padding="valid")
    return ssim_map.flatten(1).mean(1)
