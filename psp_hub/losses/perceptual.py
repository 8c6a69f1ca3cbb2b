"""Perceptual loss (paper eq. 5, second term): weighted L1 between VGG features of the output and the target."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .style import gram_matrix
from .vgg import VGGFeatureExtractor


def _gfpgan_layer_weights() -> dict[str, float]:
    """GFPGAN's published perceptual layer weights (conv1_2 .1, conv2_2 .1, conv3_4/4_4/5_4 1) mapped to VGG-16."""
    return {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0}


@dataclass
class PerceptualConfig:
    """Perceptual loss settings; the paper uses VGG-19, offline we ship VGG-16, so the default is VGG-16.

    `layer_weights` default to GFPGAN's weights (conv1_2 0.1, conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1 on VGG-19)
    mapped onto the last conv of each VGG-16 block (conv3_3, conv4_3, conv5_3); `conv*` means before the ReLU, as in
    basicsr. `network="vgg19"` needs `weights_path` to a torchvision `vgg19().features` state dict you provide.
    `style_weight` > 0 adds GFPGAN's gram-matrix style term (0 here: eq. 5 has none).
    """

    network: Literal["vgg16", "vgg19"] = "vgg16"
    weights_path: str | None = None
    layer_weights: dict[str, float] = field(default_factory=_gfpgan_layer_weights)
    use_input_norm: bool = True
    range_norm: bool = True
    criterion: Literal["l1", "l2"] = "l1"
    perceptual_weight: float = 1.0
    style_weight: float = 0.0


class PerceptualLoss(nn.Module):
    """Sum over layers of weight x mean |phi(pred) - phi(target)| with a frozen VGG; target features get no gradient."""

    def __init__(self, config: PerceptualConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PerceptualConfig()
        if config.criterion not in ("l1", "l2"):
            raise ValueError(f"criterion must be 'l1' or 'l2', got {config.criterion!r}")
        if not config.layer_weights:
            raise ValueError("layer_weights is empty")
        self.vgg = VGGFeatureExtractor(
            list(config.layer_weights),
            network=config.network,
            weights_path=Path(config.weights_path) if config.weights_path else None,
            use_input_norm=config.use_input_norm,
            range_norm=config.range_norm,
        )

    def _distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(a, b) if self.config.criterion == "l1" else F.mse_loss(a, b)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss (fp32) for (B, 3, H, W) images in [-1, 1] (or [0, 1] with range_norm=False)."""
        cfg = self.config
        pred_feats = self.vgg(pred)
        with torch.no_grad():
            target_feats = self.vgg(target.detach())
        loss = pred.new_zeros((), dtype=torch.float32)
        for name, weight in cfg.layer_weights.items():
            p, t = pred_feats[name].float(), target_feats[name].float()
            if cfg.perceptual_weight:
                loss = loss + cfg.perceptual_weight * weight * self._distance(p, t)
            if cfg.style_weight:
                loss = loss + cfg.style_weight * weight * self._distance(gram_matrix(p), gram_matrix(t))
        return loss
