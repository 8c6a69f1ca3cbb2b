"""Reference selection: one learned weight per reference, from how well its deep features match the input's.

Without it the "reference_query" fusion mixes the references by a plain masked mean, so nothing in the model can
prefer the right person's photo to a stranger's (measured own-reference shares 0.49-0.50 against a lookalike, for
the shipped 128 px model and a fresh 256 px one). Here, once per forward, each reference gets a score: the mean over
positions of a per-position query-key similarity between the input's and that reference's features, at the lowest
fusion resolution. Identity lives in those deep features, and FFHQ-aligned faces share one grid, so position n of
the input meets position n of every reference. A softmax over a sample's valid references turns scores into
weights, and every fusion scale mixes (or, for "input_query", biases its attention) by the same weights: what the
model reports as each reference's contribution is exactly the weight it used.

The query projection starts at zero, so an untrained selection scores every reference 0 and gives the uniform
masked mean: a model grown from one without selection starts with the same output. Empty slots get weight 0, a
sample without references gets all zeros, and the weights follow the references when their slots are permuted.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .fusion import _tokens

SELECTION_KEY = "selection_k"  # the reference side's key in ReferenceCache.features at the lowest fusion scale


class ReferenceSelection(nn.Module):
    """Input features (B, C, r, r) and the cached reference keys -> (B, K) mixing weights over valid references."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.dim = dim
        self.norm_input = nn.LayerNorm(channels)
        self.norm_ref = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, dim)
        self.k = nn.Linear(channels, dim)
        # the gate: a zero query scores every reference 0, i.e. the uniform mean. A zero matrix (not a zero scalar
        # in front of the score) because Adam then moves every entry at once and the scores grow within a few steps
        nn.init.zeros_(self.q.weight)
        nn.init.zeros_(self.q.bias)

    def prepare(self, ref_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reference features (B, K, C, r, r) -> {SELECTION_KEY: (B, K, r*r, dim)}, cached with the fusion's."""
        return {SELECTION_KEY: self.k(self.norm_ref(_tokens(ref_feats)))}

    def forward(self, x: torch.Tensor, prepared: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """(B, K) weights: softmax over each sample's valid references of the mean per-position similarity."""
        q = self.q(self.norm_input(_tokens(x))).float()  # (B, N, dim)
        k = prepared[SELECTION_KEY].float()  # (B, K, N, dim)
        scores = torch.einsum("bnd,bknd->bk", q, k) / (q.shape[1] * math.sqrt(self.dim))
        return masked_softmax(scores, mask.to(torch.bool))


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of (B, K) scores over the True slots of `mask`; 0 on the others, all 0 for a row without any."""
    has_any = mask.any(dim=1, keepdim=True)
    logits = scores.masked_fill(~mask, float("-inf")).masked_fill(~has_any, 0.0)
    return logits.softmax(dim=1) * mask
