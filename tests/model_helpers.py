"""Helpers for model tests: make the zero-initialised fusion and SFT outputs live, give references unequal shares,
and random inputs."""

from __future__ import annotations

import torch

from psp_hub import PSPGAN


def make_live(model: PSPGAN, seed: int = 0) -> PSPGAN:
    """Give zero-initialised projections random weights, so references and SFT really change the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (".out." in name or name.startswith("sft.") and ".conv2." in name) and p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def random_selection(model: PSPGAN, seed: int = 3) -> PSPGAN:
    """Random (non-zero) selection weights, so references get different weights; the query x 8 sharpens the scores
    of random references (which otherwise stay within ~0.02 of uniform)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.selection.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        model.selection.q.weight.mul_(8)
    return model


def sharpened(model: PSPGAN, seed: int = 3) -> PSPGAN:
    """Shares that differ from 1/K, so comparing them can fail: the random init's attention logits (std ~0.1) keep
    the attention mass near uniform (x 8 on the fusion's q and k), and an untrained selection is uniform."""
    with torch.no_grad():
        for fusion in model.fusion.values():
            fusion.q.weight.mul_(8)
            fusion.k.weight.mul_(8)
    return random_selection(model, seed) if model.selection is not None else model


def random_batch(size: int, batch: int, k: int, seed: int = 0, lq_size: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    s = lq_size or size // 2
    lq = torch.rand(batch, 3, s, s, generator=gen) * 2 - 1
    refs = torch.rand(batch, k, 3, size, size, generator=gen) * 2 - 1
    return lq, refs
