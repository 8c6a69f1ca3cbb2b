"""Frozen MobileFaceNet ArcFace identity encoder as a differentiable torch module (converted from the shared ONNX)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.frozen import FrozenEval
from ..common.geometry import ARCFACE_SIZE
from ..common.paths import weights_dir
from .static_reshape import make_reshapes_static
from .warp import warp_ffhq_to_arcface

ONNX_FILENAME = "mobilefacenet_arcface_112.onnx"
EMBED_DIM = 192


def default_onnx_path() -> Path:
    """The shared MobileFaceNet ArcFace ONNX file."""
    return weights_dir() / ONNX_FILENAME


class IdentityEncoder(FrozenEval):
    """ArcFace identity embedding (192-D, L2-normalised) of FFHQ-aligned faces in [-1, 1]; frozen, always eval."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.freeze()

    @classmethod
    def from_onnx(cls, path: str | Path | None = None) -> IdentityEncoder:
        """Convert the ONNX graph to torch with onnx2torch (default: the shared MobileFaceNet file).

        Its constant-shape Reshapes are then made static, so that the encoder can be torch.compile'd.
        """
        import onnx2torch  # train-time dependency, imported on use

        path = Path(path) if path is not None else default_onnx_path()
        if not path.is_file():
            raise FileNotFoundError(f"identity encoder weights not found: {path} (set PSP_WEIGHTS_DIR)")
        net = onnx2torch.convert(str(path))
        make_reshapes_static(net)
        return cls(net)

    def embed_arcface112(self, faces: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embed (B, 3, 112, 112) RGB faces in [-1, 1] already on the ArcFace template; (B, 192) fp32."""
        if faces.shape[-2:] != (ARCFACE_SIZE, ARCFACE_SIZE) or faces.shape[1] != 3:
            raise ValueError(f"expected (B, 3, 112, 112) faces, got {tuple(faces.shape)}")
        # The net wants (x - 127.5) / 128 on 0..255 pixels; from [-1, 1] that is x * 127.5 / 128.
        emb = self.net(faces * (127.5 / 128.0)).float()
        return F.normalize(emb, dim=-1) if normalize else emb

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Embed (B, 3, S, S) FFHQ-aligned RGB faces in [-1, 1] at any S; (B, 192) L2-normalised fp32."""
        return self.embed_arcface112(warp_ffhq_to_arcface(faces, ARCFACE_SIZE))
