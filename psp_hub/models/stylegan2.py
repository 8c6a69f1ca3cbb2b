"""StyleGAN2 generator without custom CUDA ops (runs on CPU, GPU and ZeroGPU), with spatial feature transforms.

Parameter names and shapes follow GFPGAN's `StyleGAN2GeneratorClean`, so a clean StyleGAN2 state dict
(ours from stage-1 pretraining, or a public one a user has) loads with a key-by-key check.
Modulation is applied to activations (scale input, shared conv, demodulate output) rather than by grouped
convolution: the same function, but one ordinary conv per layer, which is much faster at large batch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from psp_hub.common.channels import stylegan2_channel_table
from psp_hub.models import layers


class NormStyleCode(nn.Module):
    """Pixel-norm of the input z before the mapping MLP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (weight demodulation), optional bilinear 2x upsampling first."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        eps: float = 1e-8,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample, self.eps = demodulate, upsample, eps
        self.modulation = nn.Linear(style_dim, in_channels, bias=True)
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.constant_(self.modulation.bias, 1.0)
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
            / math.sqrt(in_channels * kernel_size**2)
        )

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, bias: torch.Tensor | None = None, gain: float = 1.0
    ) -> torch.Tensor:
        """Modulated conv of `x`, times `gain`, plus `bias` (1, Cout, 1, 1): both applied in the pass that
        demodulates (or by the conv itself), not as passes of their own over the output."""
        s = self.modulation(style)  # (B, Cin)
        w = self.weight.squeeze(0)  # (Cout, Cin, k, k); a view, where [0] cost a zero-fill and a copy in backward
        x = x * s[:, :, None, None].to(x.dtype)
        if self.upsample:
            # modulated first: a per-channel scale commutes with bilinear upsampling, and before it the product
            # (and its gradient) is a quarter of the size (the compiled prior-128 step's own kernels on CPU,
            # inductor's count: 11,480 -> 11,081 MB, benchmarks/inductor_bytes.py)
            x = layers.upsample2x(x)
        # the conv weight cast in the input's layout: cuDNN would otherwise convert it (a copy) forward and backward
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        wx = w.to(dtype=x.dtype, memory_format=layout)
        if not self.demodulate:
            conv_bias = None if bias is None else bias.reshape(-1).to(x.dtype)
            out = F.conv2d(x, wx, conv_bias, padding=self.kernel_size // 2)
            return out * gain if gain != 1.0 else out
        out = F.conv2d(x, wx, padding=self.kernel_size // 2)
        wsq = w.float().pow(2).sum(dim=(2, 3))  # (Cout, Cin)
        demod = torch.rsqrt(s.float().pow(2) @ wsq.t() + self.eps) * gain  # (B, Cout)
        demod = demod[:, :, None, None].to(out.dtype)
        return out * demod if bias is None else torch.addcmul(bias.to(out.dtype), out, demod)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, demodulate={self.demodulate}, upsample={self.upsample}"


class StyleConv(nn.Module):
    """Modulated conv, noise injection, bias and leaky ReLU (scaled by sqrt 2 as in StyleGAN2)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        # bias and sqrt 2 ride on the demodulation's pass; per StyleConv 5 passes over the output become 3
        out = self.modulated_conv(x, style, bias=self.bias, gain=2**0.5)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
        out = out + self.weight.to(out.dtype) * noise.to(out.dtype)
        return F.leaky_relu(out, 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB, added to the upsampled RGB of the previous resolution."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style, bias=self.bias)  # the bias inside the conv
        if skip is not None:
            if self.upsample:
                skip = layers.upsample2x(skip)
            out = out + skip.to(out.dtype)
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 (config F layout, clean ops): mapping MLP, 4x4 constant, two style convs per resolution.

    `forward(z)` samples unconditionally (stage-1 prior training); `synthesis(latents, conditions)` takes W+
    codes and optional per-resolution SFT (scale, shift) maps, which is how PSP-GAN steers the prior.
    """

    def __init__(
        self,
        out_size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 1,
        narrow: float = 1.0,
        max_channels: int = 512,
        sft_half: bool = True,
    ):
        super().__init__()
        self.out_size, self.style_dim, self.sft_half = out_size, style_dim, sft_half
        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2
        self.channels = ch = stylegan2_channel_table(out_size, channel_multiplier, narrow, max_channels)

        layers: list[nn.Module] = [NormStyleCode()]
        for _ in range(n_mlp):
            linear = nn.Linear(style_dim, style_dim)
            nn.init.kaiming_normal_(linear.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*layers)

        self.constant_input = ConstantInput(ch[4])
        self.style_conv1 = StyleConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, r, r))
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.style_convs.append(StyleConv(in_ch, out_ch, style_dim, upsample=True))
            self.style_convs.append(StyleConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

    def sft_channels(self, resolution: int) -> int:
        """Channels an SFT condition at this resolution must have (half the layer's under sft_half)."""
        c = self.channels[resolution]
        return c - c // 2 if self.sft_half else c

    def _noise(self, randomize: bool) -> list[torch.Tensor | None]:
        return (
            [None] * self.num_layers
            if randomize
            else [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]
        )

    def synthesis(
        self,
        latents: torch.Tensor,
        conditions: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        randomize_noise: bool = True,
    ) -> torch.Tensor:
        """W+ codes (B, num_latent, style_dim) -> image; `conditions[res] = (scale, shift)` modulate conv1 at res."""
        noise = self._noise(randomize_noise)
        out = self.constant_input(latents.shape[0]).to(latents.dtype)
        # one unbind: its backward is one stack, where each latents[:, i] cost a zero-fill and a copy
        styles = latents.unbind(1)
        out = self.style_conv1(out, styles[0], noise[0])
        out = self._sft(out, conditions, 4)
        skip = self.to_rgb1(out, styles[1])
        i = 1
        for conv1, conv2, to_rgb in zip(self.style_convs[::2], self.style_convs[1::2], self.to_rgbs):
            out = conv1(out, styles[i], noise[i])
            out = self._sft(out, conditions, out.shape[-1])
            out = conv2(out, styles[i + 1], noise[i + 1])
            skip = to_rgb(out, styles[i + 2], skip)
            i += 2
        return skip

    def _sft(self, out: torch.Tensor, conditions, resolution: int) -> torch.Tensor:
        if not conditions or resolution not in conditions:
            return out
        scale, shift = conditions[resolution]
        if self.sft_half:
            keep, mod = torch.split(out, [out.shape[1] // 2, out.shape[1] - out.shape[1] // 2], dim=1)
            return torch.cat([keep, mod * (1 + scale) + shift], dim=1)
        return out * (1 + scale) + shift

    def forward(
        self,
        z: torch.Tensor | Sequence[torch.Tensor],
        randomize_noise: bool = True,
        mixing_index: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unconditional sampling from z: one code, or two for style mixing at `mixing_index` (random if None)."""
        zs = [z] if isinstance(z, torch.Tensor) else list(z)
        ws = [self.style_mlp(zi) for zi in zs]
        if len(ws) == 1:
            latents = ws[0].unsqueeze(1).expand(-1, self.num_latent, -1)
        else:
            k = mixing_index if mixing_index is not None else random.randint(1, self.num_latent - 1)
            latents = mix_styles(ws[0], ws[1], k, self.num_latent)
        return self.synthesis(latents, randomize_noise=randomize_noise)


def draw_mixing_index(num_latent: int, prob: float) -> int:
    """A crossover layer in 1..num_latent-1 with probability `prob`, else num_latent (no mixing: every layer from the
    first code)."""
    return random.randint(1, num_latent - 1) if random.random() < prob else num_latent


def mix_styles(w0: torch.Tensor, w1: torch.Tensor, k: int | torch.Tensor, num_latent: int) -> torch.Tensor:
    """W+ codes (B, num_latent, D): layers < k take `w0`, the rest `w1`; k = num_latent is `w0` alone.

    A select rather than a cat of k and num_latent - k rows: with k a 0-d tensor the graph does not depend on its
    value, so a compiled generator keeps one graph (with a Python int drawn inside it, dynamo broke the graph and
    recompiled the synthesis per index: 5 compiles after the first tiny prior step on CPU, none with this)."""
    layer = torch.arange(num_latent, device=w0.device).view(1, -1, 1)
    return torch.where(layer < k, w0.unsqueeze(1), w1.unsqueeze(1))
