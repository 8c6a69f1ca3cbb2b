"""Larger batches with the same per-sample dynamics: learning rates by the square root, the EMA by its half-life.

A config states `optim.reference_batch`, the samples per step its lr, d_lr and ema_decay were tuned at. At B samples
per step (batch x grad_accum x processes), Adam's learning rates are multiplied by sqrt(B / reference_batch) (the
square-root rule: the gradient noise falls with sqrt(B)), and the EMA decay becomes decay ** (B / reference_batch),
so the EMA's half-life counts the same number of samples (StyleGAN2's ema_kimg). The lazy R1 interval stays in
steps and its weight in gamma, because the penalty is a per-sample mean: a sample's regularisation is unchanged.
"""

from __future__ import annotations

import dataclasses
import math

from .config import OptimConfig


def scaled_for_batch(optim: OptimConfig, samples_per_step: int) -> OptimConfig:
    """`optim` with lr, d_lr and ema_decay moved to `samples_per_step`; unchanged when reference_batch is 0."""
    if not optim.reference_batch or samples_per_step == optim.reference_batch:
        return optim
    ratio = samples_per_step / optim.reference_batch
    return dataclasses.replace(
        optim,
        lr=optim.lr * math.sqrt(ratio),
        d_lr=optim.d_lr * math.sqrt(ratio),
        ema_decay=optim.ema_decay**ratio,
        reference_batch=samples_per_step,
    )
