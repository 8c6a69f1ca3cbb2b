"""What the model returns: the restoration output and the reusable reference cache."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PSPGANOutput:
    """image: restored faces (B, 3, S, S) in about [-1, 1]; unet_images: the E_LR decoder's RGB at each
    scale (smallest first; inputs of the paper's U-Net reconstruction loss), empty unless the model was called
    with `return_unet_images=True`; latents: the W+ codes; contributions: (B, K) share each reference slot had
    (summing to 1 over a sample's valid references, 0 for empty slots), only when called with
    `return_contributions=True`: with `reference_selection` the weights the model mixed the references by,
    otherwise the fusion's attention mass per reference averaged over the fusion scales;
    reference_weights: with `reference_selection`, those same (B, K) weights with their gradients, always
    filled ((B, 0) without references) so that training can put a loss on them (None without selection)."""

    image: torch.Tensor
    unet_images: tuple[torch.Tensor, ...] = ()
    latents: torch.Tensor | None = None
    contributions: torch.Tensor | None = None
    reference_weights: torch.Tensor | None = None


@dataclass
class ReferenceCache:
    """Reference features projected for every fusion scale, computed once by `PSPGAN.encode_references`.

    Restoring many photos of one person reuses it: the reference U-Net and projections are not rerun.
    A cache of batch 1 is broadcast over any input batch.
    """

    features: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    mask: torch.Tensor | None = None  # (B, K) bool: which reference slots hold a photo

    @property
    def batch_size(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def num_references(self) -> torch.Tensor:
        return self.mask.sum(dim=1)

    def for_batch(self, batch: int) -> ReferenceCache:
        """This cache for an input batch: itself when sizes match, broadcast when it holds one sample."""
        if self.batch_size == batch:
            return self
        if self.batch_size != 1:
            raise ValueError(
                f"reference cache holds {self.batch_size} samples but the input batch has {batch}; "
                "encode the references per sample, or once (batch 1) to share them"
            )
        feats = {r: {k: v.expand(batch, *v.shape[1:]) for k, v in d.items()} for r, d in self.features.items()}
        return ReferenceCache(feats, self.mask.expand(batch, -1))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ReferenceCache:
        """Move the cached features (and cast floating ones) like `Tensor.to`."""
        feats = {
            r: {k: v.to(device=device, dtype=dtype if v.is_floating_point() else None) for k, v in d.items()}
            for r, d in self.features.items()
        }
        return ReferenceCache(feats, self.mask.to(device=device))
