"""Discriminator building blocks in plain PyTorch: equalised-lr conv/linear, [1,3,3,1] blur, conv-down-lrelu."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


class EqualConv2d(nn.Module):
    """Conv2d with weights stored N(0, 1) and scaled by 1/sqrt(fan_in) at run time (StyleGAN equalised lr)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        if w.shape[-1] == 1 and self.padding == 0:
            # 1x1 conv as a channel matmul: cuDNN's weight-gradient kernels for 1x1 convs over large images made
            # R1's double backward ~5x slower on an H100; a stride is plain subsampling.
            if self.stride > 1:
                x = x[..., :: self.stride, :: self.stride]
            return F.linear(x.movedim(1, -1), w.flatten(1), self.bias).movedim(-1, 1)
        return F.conv2d(x, w, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and an optional fused scaled leaky ReLU."""

    def __init__(self, in_features: int, out_features: int, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias)
        return F.leaky_relu(out, 0.2) * LRELU_GAIN if self.activate else out


class Blur(nn.Module):
    """Per-channel separable [1,3,3,1] / 8 low-pass filter with explicit padding (StyleGAN's bilinear filter).

    Written as shifted adds rather than a (grouped) conv: R1's double backward through a grouped conv loops over
    the groups in PyTorch and made a 512 px discriminator step ~30x slower on an H100.
    """

    def __init__(self, channels: int, pad: tuple[int, int]) -> None:
        super().__init__()
        self.channels, self.pad = channels, pad

    @staticmethod
    def _filter(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        taps = [x.narrow(dim, i, n - 3) for i in range(4)]
        return (taps[0] + 3.0 * (taps[1] + taps[2]) + taps[3]) * 0.125

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p0, p1 = self.pad
        x = F.pad(x, (p0, p1, p0, p1))
        return self._filter(self._filter(x, -1), -2)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pad={self.pad}"


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d (stride 2 when downsampling) -> [bias + leaky ReLU 0.2 x sqrt(2)]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (4 - 2) + (kernel_size - 1)  # blur taps - factor + conv taps - 1: output is exactly half the input
            layers.append(Blur(in_channels, ((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2, padding=0, bias=bias))
        else:
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias))
        if activate:
            layers.append(ScaledLeakyReLU())
        super().__init__(*layers)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU (slope 0.2) times sqrt(2), keeping activations' second moment (StyleGAN's fused lrelu)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * LRELU_GAIN
