"""Small building blocks shared by the U-Nets and the StyleGAN2 decoder: x2 upsampling and a residual block that can
resample."""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from .resample import downsample2x, upsample2x

__all__ = ["ResBlock", "downsample2x", "upsample2x"]


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
        return downsample2x(x)

    def forward(self, x):
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(self._resample(h)), 0.2)
        return h + self.skip(self._resample(x))
