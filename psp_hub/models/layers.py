"""Small building blocks shared by the U-Nets and the StyleGAN2 decoder: x2 upsampling and a residual block that can
resample."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling (half-pixel centres), the decoder's and the U-Nets' one form of it."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class ResBlock(nn.Module):
    """Residual block (conv-lrelu-resample-conv-lrelu plus a 1x1 skip), resampling 'down', 'up' or not at all."""

    def __init__(self, in_channels: int, out_channels: int, resample: str | None = None):
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample must be None, 'down' or 'up', got {resample!r}")
        self.resample = resample
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def _resample(self, x):
        if self.resample is None:
            return x
        if self.resample == "up":
            return upsample2x(x)
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)

    def forward(self, x):
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(self._resample(h)), 0.2)
        return h + self.skip(self._resample(x))
