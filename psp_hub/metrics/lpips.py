"""LPIPS v0.1 (VGG-16) built from the shared VGG-16 features and linear heads, matching the `lpips` package."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..common.frozen import FrozenEval
from ..common.images import unit_to_signed
from ..common.paths import weights_dir
from ..losses.vgg import VGGFeatureExtractor

LIN_FILENAME = "lpips_vgg16_v0.1_lin.safetensors"
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# The lpips package's ScalingLayer: inputs in [-1, 1] are shifted and scaled to ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each spatial feature vector by its L2 norm over channels (lpips.normalize_tensor)."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(FrozenEval):
    """LPIPS distance per image, (B,): sum over relu1_2..relu5_3 of the spatial mean of lin(|f0 - f1|^2 normalised).

    Same definition as `lpips.LPIPS(net='vgg', version='0.1')` (eval, no spatial output); frozen and eval-mode,
    but differentiable w.r.t. its inputs so it can also serve as a loss. Inputs RGB in [-1, 1] (or [0, 1] with
    `normalize=True`, like the package's flag).
    """

    def __init__(self, vgg_path: str | Path | None = None, lin_path: str | Path | None = None) -> None:
        super().__init__()
        self.vgg = VGGFeatureExtractor(LPIPS_LAYERS, "vgg16", vgg_path, use_input_norm=False, range_norm=False)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        self._load_lins(Path(lin_path) if lin_path is not None else weights_dir() / LIN_FILENAME)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @classmethod
    def from_shared(cls) -> LPIPS:
        """LPIPS from the shared VGG-16 features and v0.1 linear heads."""
        return cls()

    def _load_lins(self, path: Path) -> None:
        from safetensors.torch import load_file

        if not path.is_file():
            raise FileNotFoundError(f"LPIPS linear heads not found: {path}")
        state = load_file(str(path))
        for k, lin in enumerate(self.lins):
            lin.weight.data.copy_(state[f"lin{k}.model.1.weight"].float())

    def forward(self, pred: torch.Tensor, target: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, 3, H, W) pair in [-1, 1] ([0, 1] if normalize) -> (B,) fp32 distances."""
        if normalize:
            pred, target = unit_to_signed(pred), unit_to_signed(target)
        f0 = self.vgg((pred - self.shift) / self.scale)
        f1 = self.vgg((target - self.shift) / self.scale)
        total = pred.new_zeros(pred.shape[0], dtype=torch.float32)
        for name, lin in zip(LPIPS_LAYERS, self.lins):
            diff = (_unit_normalize(f0[name].float()) - _unit_normalize(f1[name].float())).pow(2)
            # the 1x1 linear head as a weighted channel sum, so autocast cannot drop it to half precision
            total = total + (diff * lin.weight.float().view(1, -1, 1, 1)).sum(dim=1).mean(dim=(1, 2))
        return total
