"""Reconstruction losses at each sample's native sharp resolution (the mixed-resolution rule, data/mixing.py).

A face that carries detail only up to 128 px must not ask a 256 px output for the blur of its upsampled target:
output and target are both downsampled (area filter) to the sample's native size and compared there. Done without
host syncs or data-dependent shapes: at each level the whole batch is compared, with the output of samples native
elsewhere replaced by their target, which adds exactly nothing for them. A batch-mean loss then sums over the
levels to the mean over samples of each one's loss at its own size. It costs one more pass of the loss networks
at a quarter of the pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from psp_hub.common.images import downsample


def at_native(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    pred: torch.Tensor,
    target: torch.Tensor,
    native: torch.Tensor | None,
    levels: Sequence[int],
) -> torch.Tensor:
    """`loss_fn` (a mean over the batch) with each sample compared at min(its native size, the images' size).

    `native` is (B,) sizes from `levels`; with no native sizes or no levels it is `loss_fn(pred, target)`.
    """
    if native is None or not levels:
        return loss_fn(pred, target)
    target = target.detach()
    total = None
    for level in levels:
        size = min(level, pred.shape[-1])
        here = (native == level).view(-1, 1, 1, 1)
        # where() promotes a bf16 output to the fp32 target's dtype, so the others' terms are exactly zero
        term = loss_fn(downsample(torch.where(here, pred, target), size), downsample(target, size))
        total = term if total is None else total + term
    return total


def sharp_only(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor], sharp: torch.Tensor | None):
    """Feature maps of fakes with those of samples that are not native at full size replaced by the real ones, so
    a paired comparison (the component style loss) adds nothing for targets whose detail is not real."""
    if sharp is None:
        return list(fake)
    return [torch.where(sharp.view(-1, 1, 1, 1), f, r.detach()) for f, r in zip(fake, real)]


def sharp_mean(per_sample: torch.Tensor, sharp: torch.Tensor | None) -> torch.Tensor:
    """Mean of a per-sample loss (B, ...) over the samples native at full size; over all without a rule; 0 if none.

    The generator's component GAN term: the downsampled comparison cannot see zero-mean detail in a sample native
    at half size, so a discriminator asking those outputs for sharp eyes got speckle patterns there instead.
    """
    flat = per_sample.float().flatten(1).mean(1)
    if sharp is None:
        return flat.mean()
    weight = sharp.to(flat.dtype)
    return (flat * weight).sum() / weight.sum().clamp_min(1.0)
