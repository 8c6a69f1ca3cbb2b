"""The PSP-GAN computations exported to ONNX, as small modules with flat tensor inputs and outputs.

Three graphs: the full restore (lq + K references + mask -> image), the reference encoder (references ->
the ReferenceCache tensors) and the restore from those cached tensors. Built with `contributions=True`, the two
restore graphs also output each reference slot's share (B, K), the model's `return_contributions` output. References enter at the model's
`reference_input_size` (below out_size when `reference_size` is set), so the graphs hold no reference resize and the
caller resizes them once from any size, as PSPGAN.reference_features does. Noise is the model's fixed buffers
(eval behaviour), so the graphs are deterministic. The cache's nested dict is flattened in `cache_layout` order.
"""

from __future__ import annotations

import torch
from torch import nn

from psp_hub.models import PSPGAN, ReferenceCache


def cache_layout(model: PSPGAN) -> list[tuple[int, str]]:
    """(resolution, key) of every tensor in the model's ReferenceCache, in a fixed order."""
    s = model.config.reference_input_size
    with torch.no_grad():
        cache = model.encode_references(torch.zeros(1, 1, 3, s, s, device=model.device))
    return [(r, k) for r in sorted(cache.features) for k in sorted(cache.features[r])]


def cache_input_names(layout: list[tuple[int, str]]) -> list[str]:
    return [f"cache_{r}_{k}" for r, k in layout]


def _restored(model: PSPGAN, lq, cache, strength, contributions: bool):
    """The model's eval-mode restore: the image, or (image, contributions) when the graph outputs both."""
    out = model.restore(lq, cache, strength=strength, randomize_noise=False, return_contributions=contributions)
    return (out.image, out.contributions) if contributions else out.image


class RestoreGraph(nn.Module):
    """(lq, refs, ref_mask, strength) -> image [, contributions]: references encoded and fused in one graph."""

    def __init__(self, model: PSPGAN, contributions: bool = False):
        super().__init__()
        self.model, self.contributions = model, contributions

    def forward(self, lq: torch.Tensor, refs: torch.Tensor, ref_mask: torch.Tensor, strength: torch.Tensor):
        cache = self.model.encode_references(refs, ref_mask)
        return _restored(self.model, lq, cache, strength, self.contributions)


class BlindGraph(nn.Module):
    """(lq, strength) -> image: the graph of an export without reference slots (K = 0)."""

    def __init__(self, model: PSPGAN):
        super().__init__()
        self.model = model

    def forward(self, lq: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        return self.model.restore(lq, None, strength=strength, randomize_noise=False).image


class EncoderGraph(nn.Module):
    """(refs, ref_mask) -> the cache tensors in `cache_layout` order (the mask passes through unchanged)."""

    def __init__(self, model: PSPGAN, layout: list[tuple[int, str]]):
        super().__init__()
        self.model, self.layout = model, layout

    def forward(self, refs: torch.Tensor, ref_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = self.model.encode_references(refs, ref_mask)
        return tuple(cache.features[r][k] for r, k in self.layout)


class CachedRestoreGraph(nn.Module):
    """(lq, ref_mask, strength, *cache tensors) -> image [, contributions]: the restore that reuses encoded
    references."""

    def __init__(self, model: PSPGAN, layout: list[tuple[int, str]], contributions: bool = False):
        super().__init__()
        self.model, self.layout, self.contributions = model, layout, contributions

    def forward(self, lq: torch.Tensor, ref_mask: torch.Tensor, strength: torch.Tensor, *cached: torch.Tensor):
        features: dict[int, dict[str, torch.Tensor]] = {}
        for (r, k), t in zip(self.layout, cached):
            features.setdefault(r, {})[k] = t
        cache = ReferenceCache(features, ref_mask)
        return _restored(self.model, lq, cache, strength, self.contributions)
