"""StyleGAN2 residual discriminator in plain PyTorch (no custom CUDA ops), for 32..1024 px faces."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from psp_hub.common.channels import stylegan2_channel_table

from .layers import ConvLayer, EqualLinear


class DiscriminatorResBlock(nn.Module):
    """conv3x3 -> blur + stride-2 conv3x3, plus a blurred stride-2 1x1 skip; sum scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


def minibatch_stddev(x: torch.Tensor, group_size: int, num_features: int = 1) -> torch.Tensor:
    """Append the per-group std of features (StyleGAN2); the group is the largest divisor of B up to group_size."""
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
    y = x.float().reshape(g, b // g, num_features, c // num_features, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # (B/g, F, C/F, H, W)
    y = y.mean(dim=(2, 3, 4)).reshape(b // g, num_features, 1, 1)
    y = y.repeat(g, 1, h, w).to(x.dtype)  # sample i belongs to group i % (B/g), as in the reshape above
    return torch.cat([x, y], dim=1)


@dataclass
class StyleGAN2DiscriminatorConfig:
    """Settings of StyleGAN2Discriminator (see its constructor)."""

    size: int = 512
    channel_multiplier: int = 1
    narrow: float = 1.0
    max_channels: int = 512
    stddev_group: int = 4


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: from-RGB, residual down blocks to 4x4, minibatch std, conv, 2 linears.

    forward(img (B, 3, size, size) in [-1, 1]) -> (B, 1) real/fake logits. Works for any batch size (the stddev
    group shrinks to a divisor of the batch). Learnt with the logistic loss + lazy R1 (psp_hub.losses.gan).
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 1,
        narrow: float = 1.0,
        max_channels: int = 512,
        stddev_group: int = 4,
    ) -> None:
        super().__init__()
        if size < 8 or size > 1024 or size & (size - 1):
            raise ValueError(f"size must be a power of two in 8..1024, got {size}")
        self.size, self.stddev_group = size, stddev_group
        ch = stylegan2_channel_table(size, channel_multiplier, narrow, max_channels)
        self.from_rgb = ConvLayer(3, ch[size], 1)
        blocks, res = [], size
        while res > 4:
            blocks.append(DiscriminatorResBlock(ch[res], ch[res // 2]))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activate=True), EqualLinear(ch[4], 1))

    @classmethod
    def from_config(cls, config: StyleGAN2DiscriminatorConfig) -> StyleGAN2Discriminator:
        """Build from a StyleGAN2DiscriminatorConfig."""
        return cls(config.size, config.channel_multiplier, config.narrow, config.max_channels, config.stddev_group)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, size, size) -> (B, 1) logits."""
        if img.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected {self.size}x{self.size} images, got {tuple(img.shape[-2:])}")
        x = self.blocks(self.from_rgb(img))
        x = self.final_conv(minibatch_stddev(x, self.stddev_group))
        return self.final_linear(x.flatten(1))
