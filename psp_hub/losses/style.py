"""Gram-matrix style loss, used by GFPGAN on facial-component discriminator features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features -> (B, C, C) Gram matrices normalised by C*H*W, computed in fp32."""
    b, c, h, w = feat.shape
    f = feat.float().reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def gram_style_loss(
    fake_feats: Sequence[torch.Tensor], real_feats: Sequence[torch.Tensor], weights: Sequence[float] | None = None
) -> torch.Tensor:
    """Weighted L1 between Gram matrices of fake and (detached) real feature lists; GFPGAN uses weights (0.5, 1)."""
    if len(fake_feats) != len(real_feats):
        raise ValueError(f"got {len(fake_feats)} fake and {len(real_feats)} real feature maps")
    weights = weights if weights is not None else [1.0] * len(fake_feats)
    loss = fake_feats[0].new_zeros((), dtype=torch.float32)
    for w, f, r in zip(weights, fake_feats, real_feats):
        loss = loss + w * F.l1_loss(gram_matrix(f), gram_matrix(r.detach()))
    return loss
