"""Identity similarity metric: cosine between ArcFace embeddings of restored and ground-truth faces."""

from __future__ import annotations

import torch

from ..identity import IdentityEncoder


@torch.no_grad()
def identity_similarity(encoder: IdentityEncoder, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image cosine similarity (B,) of FFHQ-aligned (B, 3, S, S) faces in [-1, 1]; 1 = same embedding."""
    return (encoder(pred) * encoder(target)).sum(dim=-1)
