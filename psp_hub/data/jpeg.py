"""Baseline JPEG (4:2:0, libjpeg's quality-scaled standard tables) encoded and decoded in torch, a batch at once.

The training input's JPEG step on the GPU, each image at its own quality: colour conversion and rounding as libjpeg
(JFIF YCbCr, 8-bit samples), 2x2 chroma averaging, orthonormal 8x8 DCT, rounding to the quantisation grid, and
libjpeg's default "fancy" (triangular = bilinear) chroma upsampling on decode. It leaves out the entropy coding,
which is lossless. Checked against OpenCV's encoder in tests/test_gpu_degradation.py.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn import functional as F

# ITU T.81 Annex K tables (libjpeg's std_luminance_quant_tbl / std_chrominance_quant_tbl), row-major
_LUMA = (
    16,
    11,
    10,
    16,
    24,
    40,
    51,
    61,
    12,
    12,
    14,
    19,
    26,
    58,
    60,
    55,
    14,
    13,
    16,
    24,
    40,
    57,
    69,
    56,
    14,
    17,
    22,
    29,
    51,
    87,
    80,
    62,
    18,
    22,
    37,
    56,
    68,
    109,
    103,
    77,
    24,
    35,
    55,
    64,
    81,
    104,
    113,
    92,
    49,
    64,
    78,
    87,
    103,
    121,
    120,
    101,
    72,
    92,
    95,
    98,
    112,
    100,
    103,
    99,
)
_CHROMA = (
    17,
    18,
    24,
    47,
    99,
    99,
    99,
    99,
    18,
    21,
    26,
    66,
    99,
    99,
    99,
    99,
    24,
    26,
    56,
    99,
    99,
    99,
    99,
    99,
    47,
    66,
    99,
    99,
    99,
    99,
    99,
    99,
) + (99,) * 32
MCU = 16  # a 4:2:0 minimum coded unit: image sides must be multiples of it (pad by edge replication first)


@functools.lru_cache(maxsize=8)
def _base_tables(device: torch.device) -> torch.Tensor:
    """(2, 8, 8) luma and chroma base tables on `device`, copied there once (a copy per batch would sync the host)."""
    return torch.tensor([_LUMA, _CHROMA], dtype=torch.float32).view(2, 8, 8).to(device)


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, 1, 1, 8, 8) luma and chroma tables for per-image qualities (libjpeg's jpeg_quality_scaling)."""
    q = quality.to(torch.float32).clamp(1, 100)
    scale = torch.where(q < 50, torch.floor(5000.0 / q), 200.0 - 2.0 * q).view(-1, 1, 1, 1, 1, 1)
    tables = torch.floor((_base_tables(quality.device) * scale[..., None] + 50.0) / 100.0).clamp(1, 255)
    return tables[..., 0, :, :], tables[..., 1, :, :]


@functools.lru_cache(maxsize=8)
def _dct_matrix(device: torch.device) -> torch.Tensor:
    """Orthonormal DCT-II of size 8 (JPEG's FDCT is the 2-D orthonormal DCT), built once per device."""
    k = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m.to(device=device, dtype=torch.float32)


def _quantise(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) samples 0..255 through level shift, DCT, quantisation, dequantisation and inverse DCT."""
    b, c, h, w = plane.shape
    d = _dct_matrix(plane.device)
    blocks = (plane - 128.0).view(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (B, C, H/8, W/8, 8, 8)
    coeff = d @ blocks @ d.T
    coeff = torch.round(coeff / table) * table
    back = d.T @ coeff @ d
    return back.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w) + 128.0


def jpeg_batch(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] (H, W multiples of 16) -> its JPEG round trip at `quality` (B,), in [0, 1]."""
    if img.shape[-1] % MCU or img.shape[-2] % MCU:
        raise ValueError(f"image sides must be multiples of {MCU}, got {tuple(img.shape[-2:])}")
    rgb = torch.round(img.float().clamp(0, 1) * 255.0)
    r, g, b = rgb.unbind(1)
    y = torch.round(0.299 * r + 0.587 * g + 0.114 * b)
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0
    chroma = torch.round(F.avg_pool2d(torch.stack([cb, cr], 1), 2))  # libjpeg's h2v2 downsampling: 2x2 mean
    luma_q, chroma_q = quant_tables(quality)
    y = _quantise(y[:, None], luma_q).clamp(0, 255).round()
    chroma = _quantise(chroma, chroma_q).clamp(0, 255).round()
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False) - 128.0
    cb, cr = chroma.unbind(1)
    y = y[:, 0]
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return out.round().clamp(0, 255) / 255.0
