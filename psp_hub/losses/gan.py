"""StyleGAN2 logistic GAN losses and the (lazy) R1 gradient penalty on real images."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def g_nonsaturating_terms(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(fake)) = softplus(-D(fake)) per logit, in fp32 (for a per-sample weighting of the loss)."""
    return F.softplus(-fake_logits.float())


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss -log sigmoid(D(fake)) = softplus(-D(fake)), averaged (paper eq. 8; also patch logits, eq. 7)."""
    return g_nonsaturating_terms(fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss softplus(-D(real)) + softplus(D(fake)), each averaged."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||d D(real) / d real||^2, differentiable (create_graph) and computed in fp32.

    `real_images` must have requires_grad=True before D ran. Scale it yourself as in StyleGAN2:
    `r1_gamma / 2 * r1_penalty(...) * d_reg_every` on every `d_reg_every`-th step (lazy regularisation).
    Under autocast the gradient is taken with autocast off from the fp32 sum of the logits, so it is not
    quantised to bf16/fp16; the backward ops still follow the dtypes the forward pass used.
    """
    if not real_images.requires_grad:
        raise ValueError("real_images must require grad before the discriminator forward pass")
    device_type = real_images.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        (grad,) = torch.autograd.grad(outputs=real_logits.float().sum(), inputs=real_images, create_graph=True)
        return _squared_norm_mean(grad)


def r1_penalty_traced(disc: Callable[[torch.Tensor], torch.Tensor], real_images: torch.Tensor) -> torch.Tensor:
    """`r1_penalty` of `disc` at `real_images`, the input gradient taken by `torch.func.grad` inside the function
    instead of `autograd.grad(create_graph=True)` after it: the same penalty and parameter gradients, in a form
    torch.compile traces into one graph whose backward AOTAutograd derives (its compiled graphs are differentiable
    once, so `r1_penalty`, which differentiates their output's graph again, runs eager code)."""

    def logits_sum(images: torch.Tensor) -> torch.Tensor:
        return disc(images).float().sum()

    grad = torch.func.grad(logits_sum)(real_images.detach())
    with torch.autocast(device_type=real_images.device.type, enabled=False):
        return _squared_norm_mean(grad)


def r1_penalty_of(
    disc: Callable[[torch.Tensor], torch.Tensor], real_images: torch.Tensor, traced: bool = False
) -> torch.Tensor:
    """R1 of the callable `disc` (a discriminator, with any augmentation in front of it) at `real_images`: its eager
    forward then `r1_penalty`, or with `traced` `r1_penalty_traced`, the form torch.compile compiles."""
    if traced:
        return r1_penalty_traced(disc, real_images)
    real = real_images.detach().requires_grad_(True)
    return r1_penalty(disc(real), real)


def _squared_norm_mean(grad: torch.Tensor) -> torch.Tensor:
    """The batch mean of each sample's squared gradient norm, in fp32."""
    return grad.float().pow(2).reshape(grad.shape[0], -1).sum(1).mean()
