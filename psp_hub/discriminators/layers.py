"""Discriminator building blocks in plain PyTorch: equalised-lr conv/linear, [1,3,3,1] blur, conv-down-lrelu."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from psp_hub.common.fir import filter_1331

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
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding
        # an output gain (the next leaky ReLU's sqrt 2) applied to weight and bias: no pass over the activations
        self.gain = gain

    def _bias(self) -> torch.Tensor | None:
        return self.bias * self.gain if self.bias is not None and self.gain != 1.0 else self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * (self.scale * self.gain)
        if w.shape[-1] == 1 and self.padding == 0:
            # 1x1 conv as a channel matmul: cuDNN's weight-gradient kernels for 1x1 convs over large images made
            # R1's double backward ~5x slower on an H100; a stride is plain subsampling.
            if self.stride > 1:
                x = x[..., :: self.stride, :: self.stride]
            return F.linear(x.movedim(1, -1), w.flatten(1), self._bias()).movedim(-1, 1)
        return F.conv2d(x, w, self._bias(), stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        gain = f", gain={self.gain:.4g}" if self.gain != 1.0 else ""
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}, bias={self.bias is not None}{gain}"


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and an optional fused scaled leaky ReLU."""

    def __init__(self, in_features: int, out_features: int, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.activate:
            return F.linear(x, self.weight * self.scale, self.bias)
        # leaky ReLU's sqrt(2) on weight and bias (positively homogeneous): no pass over the output
        return F.leaky_relu(F.linear(x, self.weight * (self.scale * LRELU_GAIN), self.bias * LRELU_GAIN), 0.2)


class Blur(nn.Module):
    """Per-channel separable [1,3,3,1] / 8 low-pass filter with explicit padding (StyleGAN's bilinear filter).

    Eager, three 2x2 box means ([1,1] convolved thrice is [1,3,3,1]): `avg_pool2d` is one kernel forward and one
    backward, and R1's double backward through it stays native. A grouped conv made a 512 px discriminator step
    ~30x slower on an H100 (R1 loops over the groups); shifted adds cost 8 slice-backward zero-fill and copy pairs
    per blur in every eager backward (a prior step's G, D and R1 passes at 64 px, counted on CPU: 3071 -> 2147 eager
    ops). Compiled, shifted taps (`filter_1331`), which inductor fuses into one kernel per axis where it realises each
    box mean: the compiled prior-128 step's own kernels (G, D and R1 passes; batch 8, fp32, counted by inductor on
    CPU with benchmarks/inductor_bytes.py) moved 11,480 MB instead of 13,821, the convolutions and matmuls the same.
    The zero padding is one `F.pad` in front, never `avg_pool2d`'s own: torch 2.11's CUDA backward of a padded pool
    over channels-last input (what the 1x1 convs' matmul path hands on) puts each gradient on the wrong pixels. On
    the H200 that made eager input gradients of this blur 1.36 (relative) off and eager R1 0.50 off (docs/speed.md,
    "Same losses").
    """

    def __init__(self, channels: int, pad: tuple[int, int], stride: int = 1) -> None:
        super().__init__()
        self.channels, self.pad, self.stride = channels, pad, stride  # stride: keep every stride-th output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p0, p1 = self.pad
        x = F.pad(x, (p0, p1, p0, p1))
        if torch.compiler.is_compiling():
            return blur_taps(x, self.stride)
        return blur_box_means(x, self.stride)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pad={self.pad}, stride={self.stride}"


def blur_box_means(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """The [1,3,3,1] / 8 filter over an already padded `x` as three unpadded 2x2 `avg_pool2d`, the last at `stride`."""
    for i in range(3):
        x = F.avg_pool2d(x, 2, stride=stride if i == 2 else 1)
    return x


def blur_taps(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """`blur_box_means` as shifted taps along each axis, computing only the kept outputs."""
    return filter_1331(filter_1331(x, 2, 1 / 8, stride), 3, 1 / 8, stride)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d (stride 2 when downsampling) -> [bias + leaky ReLU 0.2 x sqrt(2)].

    The sqrt(2) is folded into the conv's weight and bias (leaky ReLU is positively homogeneous), and a 1x1 conv's
    stride 2 is the blur's last box mean at stride 2: the same function with two fewer passes over the activations
    (and no strided-slice backward). Module indices, hence state-dict keys, are as before.
    """

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
        gain = LRELU_GAIN if activate else 1.0
        if downsample:
            p = (4 - 2) + (kernel_size - 1)  # blur taps - factor + conv taps - 1: output is exactly half the input
            stride_in_blur = kernel_size == 1
            layers.append(Blur(in_channels, ((p + 1) // 2, p // 2), stride=2 if stride_in_blur else 1))
            conv_stride = 1 if stride_in_blur else 2
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, conv_stride, 0, bias, gain))
        else:
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias, gain))
        if activate:
            layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)
