"""Patch discriminator for facial components (eyes, mouth), in the style of GFPGAN's FacialComponentDiscriminator."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvLayer


class ComponentDiscriminator(nn.Module):
    """VGG-style conv stack (conv, [down-conv, conv] x num_down, 1-channel conv) giving (B, 1, s/2^n, s/2^n) logits.

    With return_feats=True it also returns the feature map after each down stage, for GFPGAN's gram style loss
    (psp_hub.losses.gram_style_loss). Defaults match GFPGAN: 64 -> 128 -> 256 channels, two downsamplings.
    """

    def __init__(self, in_size: int, base_channels: int = 64, num_down: int = 2, max_channels: int = 512) -> None:
        super().__init__()
        if in_size % (2**num_down):
            raise ValueError(f"in_size {in_size} is not divisible by 2**num_down = {2**num_down}")
        self.in_size = in_size
        self.conv_first = ConvLayer(3, base_channels, 3)
        stages, c = [], base_channels
        for _ in range(num_down):
            c_out = min(max_channels, c * 2)
            stages.append(nn.Sequential(ConvLayer(c, c_out, 3, downsample=True), ConvLayer(c_out, c_out, 3)))
            c = c_out
        self.stages = nn.ModuleList(stages)
        self.final_conv = ConvLayer(c, 1, 3, activate=False)

    @property
    def out_size(self) -> int:
        """Side of the logit map."""
        return self.in_size // 2 ** len(self.stages)

    def forward(
        self, patch: torch.Tensor, return_feats: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, in_size, in_size) in [-1, 1] -> logits (B, 1, h, w) [, features after each down stage]."""
        if patch.shape[-2:] != (self.in_size, self.in_size):
            raise ValueError(f"expected {self.in_size}x{self.in_size} patches, got {tuple(patch.shape[-2:])}")
        feat = self.conv_first(patch)
        feats: list[torch.Tensor] = []
        for stage in self.stages:
            feat = stage(feat)
            feats.append(feat)
        logits = self.final_conv(feat)
        return (logits, feats) if return_feats else logits
