"""The U-Net feature extractors: E_LR on the degraded input and E_p on each reference photo (paper 3.1.1-3.1.2).

Both share this structure: a 1x1 stem, one residual down block per halving down to the bottleneck, and
one residual up block per doubling, with additive skips (as in GFPGAN). The decoder is exposed stage by
stage so PSP-GAN can fuse reference features into it at each scale before the next stage.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import PSPGANConfig
from .layers import ResBlock


class UNetExtractor(nn.Module):
    """Residual U-Net on `input_size` px images (default out_size) whose decoder runs from the bottleneck up to
    `decode_up_to` px (default: its input size)."""

    def __init__(
        self,
        config: PSPGANConfig,
        decode_up_to: int | None = None,
        with_rgb: bool = False,
        input_size: int | None = None,
    ):
        super().__init__()
        size = input_size or config.out_size
        res = [r for r in config.resolutions if r <= size]  # bottleneck .. input size
        top = min(decode_up_to or size, size)
        ch = {r: config.unet_channels(r) for r in res}
        self.resolutions = res
        self.decoder_resolutions = [r for r in res if r <= top]
        self.stem = nn.Conv2d(3, ch[res[-1]], 1)
        self.down = nn.ModuleList(ResBlock(ch[r], ch[r // 2], "down") for r in reversed(res[1:]))
        self.bottleneck = nn.Conv2d(ch[res[0]], ch[res[0]], 3, padding=1)
        self.up = nn.ModuleList(ResBlock(ch[r // 2], ch[r], "up") for r in self.decoder_resolutions[1:])
        self.to_rgb = nn.ModuleList(nn.Conv2d(ch[r], 3, 1) for r in self.decoder_resolutions[1:]) if with_rgb else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Image -> (bottleneck decoder start, encoder skips by resolution)."""
        feat = F.leaky_relu(self.stem(x), 0.2)
        skips = {feat.shape[-1]: feat}
        for block in self.down:
            feat = block(feat)
            skips[feat.shape[-1]] = feat
        return F.leaky_relu(self.bottleneck(feat), 0.2), skips

    def up_step(self, index: int, feat: torch.Tensor, skips: dict[int, torch.Tensor]) -> torch.Tensor:
        """One decoder stage: add the encoder skip at this scale, then upsample to twice the size."""
        return self.up[index](feat + skips[feat.shape[-1]])

    def rgb(self, index: int, feat: torch.Tensor) -> torch.Tensor:
        """RGB of decoder stage `index`'s output (needs `with_rgb`): what the U-Net reconstruction loss compares."""
        return self.to_rgb[index](feat)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Image -> decoder features by resolution (bottleneck .. decode_up_to), no fusion: E_p's use."""
        feat, skips = self.encode(x)
        feats = {feat.shape[-1]: feat}
        for i in range(len(self.up)):
            feat = self.up_step(i, feat, skips)
            feats[feat.shape[-1]] = feat
        return feats
