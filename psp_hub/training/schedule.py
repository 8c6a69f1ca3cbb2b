"""Learning-rate schedule and EMA, from diffusers: the paper's step decays scaled to the run's length."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import nn


def step_decay_scheduler(optimizer, max_steps: int, decay_at: tuple[float, ...], factor: float, start_step: int = 0):
    """diffusers' piecewise-constant schedule: x`factor` at each fraction in `decay_at` of `max_steps`.

    The paper halves 2e-3 at 700k and 750k of 800k iterations, i.e. decay_at=(0.875, 0.9375), factor 0.5.
    `start_step` > 0: a fresh optimizer joining a run that has taken that many steps (a continued run) gets the lr
    the run has there, and the decays stay where they were.
    """
    rules, mult = [], 1.0
    for frac in sorted(decay_at):
        rules.append(f"{mult}:{max(1, round(frac * max_steps))}")
        mult *= factor
    rules.append(str(mult))
    if start_step > 0:  # torch's schedulers resume from `last_epoch` given each group's initial_lr
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return get_scheduler("piecewise_constant", optimizer, step_rules=",".join(rules), last_epoch=start_step - 1)


def make_ema(model, decay: float) -> EMAModel:
    """diffusers' EMAModel over the trainable parameters (fixed decay, no warm-up, as in GFPGAN/StyleGAN2)."""
    return EMAModel([p for p in model.parameters()], decay=decay, use_ema_warmup=False, foreach=True)


@contextmanager
def ema_weights(ema: EMAModel, model: nn.Module) -> Iterator[nn.Module]:
    """`model` holding the EMA weights inside the block, its own weights again after it (also on an error)."""
    params = list(model.parameters())
    ema.store(params)
    ema.copy_to(params)
    try:
        yield model
    finally:
        ema.restore(params)
