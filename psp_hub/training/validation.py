"""Validation on held-out identities: PSNR, SSIM, LPIPS, identity similarity and fine detail of the EMA model."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from psp_hub.common import tensor_to_image
from psp_hub.data import DataConfig, build_eval_dataset
from psp_hub.data.mixing import native_sizes
from psp_hub.data.references import open_parquet
from psp_hub.data.sources import data_files
from psp_hub.metrics import LPIPS, geometric_mean, identity_similarity, psnr, sharpness_ratio, ssim
from psp_hub.metrics.sharpness import component_sharpness_ratio

MEANS = ("psnr", "ssim", "lpips", "identity", "ref_gain")
RATIOS = ("sharpness", "component_sharpness")
"""Detail ratios (output over target), averaged on a log scale as the evaluation averages its sharpness ratio."""


def validation_native_px(data: DataConfig, rows: list[dict]) -> list[int]:
    """Each validation row's native size under the training's mixed-resolution rule (data/mixing.native_sizes).

    The faces are the first `val_samples` rows of `data.path`'s validation split in stored order, at data.out_size,
    with the training degradation drawn once per face (build_eval_dataset); `extra_path` plays no part. For
    psp-256.yaml (sharp256, sharp_threshold 224) 67 of the first 128 measure sharp_px >= 224 and are native at
    256; the other 61 are native at 128, upsampled, with no real 256 px detail to compare against. With the rule
    off (sharp_threshold 0) every face counts as native at out_size, as training then treats them.
    """
    sharp = np.full(len(rows), np.nan)
    if data.sharp_threshold > 0:
        measured = {}
        for url in data_files(data.path, "default", "validation", data.revision):
            shard = open_parquet(url)
            if "sharp_px" in shard.schema_arrow.names:  # the 128 px corpus predates the measure
                table = shard.read(columns=["id", "sharp_px"]).to_pydict()
                measured |= dict(zip(table["id"], table["sharp_px"]))
        sharp = np.array([np.nan if measured.get(r["id"]) is None else measured[r["id"]] for r in rows])
    stored = np.array([r["size"] for r in rows], dtype=np.float64)
    return native_sizes(sharp, stored, data.out_size, data.sharp_threshold).tolist()


class Validator:
    """Holds a fixed set of validation samples (fixed degradation) and the metric networks.

    Samples may carry `native_px` (the size their detail is real at, as training batches do): the detail ratios
    count only those native at the output size, so the number means the same across runs on the same data.
    """

    def __init__(self, data: DataConfig, num_samples: int, device, identity_encoder=None, samples=None):
        if samples is None:
            dataset = build_eval_dataset(data, split="validation")
            samples = list(itertools.islice(iter(dataset), num_samples))
            for sample, native in zip(samples, validation_native_px(data, dataset.rows[: len(samples)])):
                sample["native_px"] = native
        self.samples = samples
        self.sharp = [int(s.get("native_px", s["target"].shape[-1])) >= s["target"].shape[-1] for s in samples]
        self.device = device
        self.lpips = LPIPS.from_shared().to(device).eval()
        self.identity = identity_encoder

    @torch.no_grad()
    def __call__(self, model, batch_size: int = 16) -> dict[str, float]:
        """Mean metrics over the held-out samples, with references as the loader gives them.

        With the identity net, `val/ref_gain` is the identity similarity with the sample's own references minus
        that with the next sample's (another face of the set), over samples where both have references: about
        0 means the model ignores who the references show (a collapse a chunk's losses do not reveal).
        `val/sharpness` and `val/component_sharpness`: the evaluation's detail ratio (Laplacian variance, output
        over target) on the whole face and inside the eye and mouth boxes, geometric mean over native-sharp faces.
        """
        was = model.training
        model.eval()
        scores: dict[str, list] = {k: [] for k in MEANS + RATIOS}
        for start in range(0, len(self.samples), batch_size):
            batch = self._batch(self.samples[start : start + batch_size])
            out = model(batch["lq"], batch["refs"], batch["ref_mask"]).image.float().clamp(-1, 1)
            target = batch["target"].float()
            scores["psnr"].append(psnr(out, target))
            scores["ssim"].append(ssim(out, target))
            scores["lpips"].append(self.lpips(out, target).flatten())
            for k, v in self._detail(out, target, batch["boxes"], self.sharp[start : start + batch_size]).items():
                scores[k].append(v)
            if self.identity is not None:
                scores["identity"].append(self._identity(out, target))
                gain = self._reference_gain(model, batch, scores["identity"][-1])
                if gain.numel():
                    scores["ref_gain"].append(gain)
        model.train(was)
        means = {f"val/{k}": torch.cat(scores[k]).mean().item() for k in MEANS if scores[k]}
        ratios = {f"val/{k}": geometric_mean(np.concatenate(scores[k])) for k in RATIOS if scores[k]}
        return means | ratios

    @staticmethod
    def _detail(out: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor, sharp: list[bool]) -> dict:
        """Per-face detail ratios of a batch's native-sharp faces, on uint8 images as the evaluation scores them
        (numpy: 128 faces at 256 px, output and target, took ~50 ms of a busy 2-core CPU here)."""
        keep = [i for i, s in enumerate(sharp) if s]
        if not keep:
            return {}
        out_u8, target_u8 = tensor_to_image(out[keep]), tensor_to_image(target[keep])
        return {
            "sharpness": sharpness_ratio(list(out_u8), list(target_u8)),
            "component_sharpness": component_sharpness_ratio(out_u8, target_u8, boxes[keep].cpu().numpy()),
        }

    def _batch(self, chunk: list[dict]) -> dict[str, torch.Tensor]:
        return {
            k: torch.stack([torch.as_tensor(s[k]) for s in chunk]).to(self.device)
            for k in ("lq", "target", "refs", "ref_mask", "boxes")
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
