"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) of the images a discriminator sees.

The same random colour, translation and cutout transforms are applied to real and generated images (each sample
drawn independently) before the discriminator, in both its loss and the generator's; gradients flow through them,
so the generator learns undistorted faces while the discriminator cannot memorise a small set (the sharp 256 px
set has ~9k faces). Batched torch ops on the images' device; draws come from torch's global RNG of that device,
which accelerate's checkpoints save and restore. Images are in [-1, 1], as the paper's code assumes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

TRANSLATION_RATIO = 0.125  # the paper's shift: up to 1/8 of the side, zero-padded
CUTOUT_RATIO = 0.5  # the paper's square hole: half the side


def _rand(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, dtype=x.dtype, device=x.device)


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add a per-sample offset in [-0.5, 0.5)."""
    return x + (_rand(x, 1, 1, 1) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance from the per-pixel channel mean by [0, 2)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance from the per-image mean by [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by whole pixels, up to `ratio` of its side in x and y, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :, None] + ty + 1).clamp(0, h + 1).expand(b, h, w)
    cols = (torch.arange(w, device=x.device)[None, None, :] + tx + 1).clamp(0, w + 1).expand(b, h, w)
    padded = F.pad(x, [1, 1, 1, 1])  # the one-pixel zero border is where out-of-image positions land
    flat = (rows * (w + 2) + cols).reshape(b, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.reshape(b, x.shape[1], -1).gather(2, flat).reshape_as(x)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero one square of `ratio` of the side per image, centred anywhere (clipped at the borders)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside)[:, None].to(x.dtype)


POLICIES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> its names in order; '' -> () (augmentation off). Unknown names are errors."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policies {unknown}; choose from {sorted(POLICIES)}")
    return names


class DiffAugment:
    """Callable that applies a policy's transforms in order; with an empty policy it returns its input unchanged."""

    def __init__(self, policy: str = ""):
        self.names = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # a channels-last batch stays channels-last (the gathers below return NCHW), so D needs no layout copy
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        for name in self.names:
            for fn in POLICIES[name]:
                x = fn(x)
        return x.contiguous(memory_format=torch.channels_last) if nhwc else x
