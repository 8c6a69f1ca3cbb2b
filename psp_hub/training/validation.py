"""Validation on held-out identities: PSNR, SSIM, LPIPS and identity similarity of the EMA model."""

from __future__ import annotations

import itertools

import torch

from psp_hub.data import DataConfig, build_eval_dataset
from psp_hub.metrics import LPIPS, identity_similarity, psnr, ssim


class Validator:
    """Holds a fixed set of validation samples (fixed degradation) and the metric networks."""

    def __init__(self, data: DataConfig, num_samples: int, device, identity_encoder=None, samples=None):
        if samples is None:
            samples = list(itertools.islice(iter(build_eval_dataset(data, split="validation")), num_samples))
        self.samples = samples
        self.device = device
        self.lpips = LPIPS.from_shared().to(device).eval()
        self.identity = identity_encoder

    @torch.no_grad()
    def __call__(self, model, batch_size: int = 16) -> dict[str, float]:
        """Mean metrics over the held-out samples, with references as the loader gives them.

        With the identity net, `val/ref_gain` is the identity similarity with the sample's own references minus
        that with the next sample's (another face of the set), over samples where both have references: about
        0 means the model ignores who the references show (a collapse a chunk's losses do not reveal).
        """
        was = model.training
        model.eval()
        scores: dict[str, list[torch.Tensor]] = {k: [] for k in ("psnr", "ssim", "lpips", "identity", "ref_gain")}
        for start in range(0, len(self.samples), batch_size):
            batch = self._batch(self.samples[start : start + batch_size])
            out = model(batch["lq"], batch["refs"], batch["ref_mask"]).image.float().clamp(-1, 1)
            target = batch["target"].float()
            scores["psnr"].append(psnr(out, target))
            scores["ssim"].append(ssim(out, target))
            scores["lpips"].append(self.lpips(out, target).flatten())
            if self.identity is not None:
                scores["identity"].append(self._identity(out, target))
                gain = self._reference_gain(model, batch, scores["identity"][-1])
                if gain.numel():
                    scores["ref_gain"].append(gain)
        model.train(was)
        return {f"val/{k}": torch.cat(v).mean().item() for k, v in scores.items() if v}

    def _batch(self, chunk: list[dict]) -> dict[str, torch.Tensor]:
        return {
            k: torch.stack([torch.as_tensor(s[k]) for s in chunk]).to(self.device)
            for k in ("lq", "target", "refs", "ref_mask")
        }

    def _reference_gain(self, model, batch: dict, own: torch.Tensor) -> torch.Tensor:
        """Identity with own references minus with the next sample's, where both samples have references."""
        refs, mask = batch["refs"].roll(1, dims=0), batch["ref_mask"].roll(1, dims=0)
        both = batch["ref_mask"].any(1) & mask.any(1)
        if batch["lq"].shape[0] < 2 or not both.any():
            return own.new_zeros(0)
        other = model(batch["lq"], refs, mask).image.float().clamp(-1, 1)
        return (own - self._identity(other, batch["target"].float()))[both]

    def _identity(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Identity similarity in the encoder's own precision: training may have cast it to bf16 (loss_nets_bf16)."""
        dtype = next(self.identity.parameters()).dtype
        with torch.autocast(out.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return identity_similarity(self.identity, out, target).float()
