"""Identity-preserving loss (paper eq. 6): distance between ArcFace embeddings of the output and the target."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..identity import IdentityEncoder


class IdentityLoss(nn.Module):
    """||eta(pred) - eta(target)|| with a frozen ArcFace encoder; the target embedding is taken under no_grad.

    criterion "l1" (eq. 6; mean over the 192 L2-normalised dims, as GFPGAN's L1Loss), "l2" (mean squared) or
    "cosine" (1 - cos, averaged over the batch). Inputs: FFHQ-aligned (B, 3, S, S) RGB in [-1, 1].
    """

    def __init__(self, encoder: IdentityEncoder, criterion: Literal["l1", "l2", "cosine"] = "l1") -> None:
        super().__init__()
        if criterion not in ("l1", "l2", "cosine"):
            raise ValueError(f"criterion must be 'l1', 'l2' or 'cosine', got {criterion!r}")
        self.encoder = encoder
        self.criterion = criterion

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar fp32 loss."""
        e_pred = self.encoder(pred)
        with torch.no_grad():
            e_target = self.encoder(target.detach())
        if self.criterion == "l1":
            return F.l1_loss(e_pred, e_target)
        if self.criterion == "l2":
            return F.mse_loss(e_pred, e_target)
        return (1.0 - (e_pred * e_target).sum(dim=-1)).mean()
