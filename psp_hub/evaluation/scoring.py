"""Every metric per image against the targets, and the per-group averages the report shows."""

from __future__ import annotations

import numpy as np
import torch

from psp_hub.common import tensor_to_image
from psp_hub.identity import IdentityEncoder
from psp_hub.metrics import LPIPS, DlibIdentity, psnr, sharpness_ratio, ssim

from .config import AGGREGATE


class Scorer:
    """Every metric for a batch of outputs against their targets, per image (the targets' features computed once)."""

    def __init__(self, device):
        self.device = device
        self.lpips = LPIPS.from_shared().to(device)
        self.arcface = IdentityEncoder.from_onnx().to(device)
        self.dlib = DlibIdentity()

    @torch.no_grad()
    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        """Scores of one method's outputs (B, 3, S, S) against the targets."""
        return self.score_all({"out": out}, target)["out"]

    @torch.no_grad()
    def score_all(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
        """Scores of every method's outputs against the same targets: {method: {metric: (B,)}}."""
        target = target.float()
        target_u8 = list(tensor_to_image(target))
        target_dlib = self.dlib.descriptors(target_u8)
        target_arc = self.arcface(target)
        scores = {}
        for name, out in outputs.items():
            out = out.float().clamp(-1, 1)
            out_u8 = list(tensor_to_image(out))
            scores[name] = {
                "psnr": psnr(out, target).cpu().numpy(),
                "ssim": ssim(out, target).cpu().numpy(),
                "lpips": self.lpips(out, target).flatten().cpu().numpy(),
                "arcface_similarity": (self.arcface(out) * target_arc).sum(dim=-1).cpu().numpy(),
                "dlib_distance": np.linalg.norm(self.dlib.descriptors(out_u8) - target_dlib, axis=1),
                "sharpness_ratio": sharpness_ratio(out_u8, target_u8),
            }
        return scores


def aggregate(by_metric: dict, sel: np.ndarray) -> dict[str, float]:
    """Every metric over the selected faces: the mean, or AGGREGATE's rule (geometric mean for ratios)."""
    return {m: float(AGGREGATE.get(m, np.mean)(np.array(v)[sel])) for m, v in by_metric.items()}


def grouped(by_metric: dict, older: np.ndarray) -> dict:
    """Every metric over all, older and younger faces (groups with no face are left out)."""
    return {
        group: aggregate(by_metric, sel)
        for group, sel in (("all", np.ones_like(older)), ("older", older), ("younger", ~older))
        if sel.any()
    }
