"""Differentiable warp of FFHQ-aligned faces onto the ArcFace 112 template (a fixed similarity, via kornia)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_affine

from psp_hub.common.geometry import ARCFACE_SIZE, similarity_scale

from .templates import ffhq_to_arcface_matrix


def _work_size(out_size: int) -> int:
    """The FFHQ crop side at which the warp to `out_size` is about 1:1, so that bilinear sampling does not alias."""
    return math.ceil(similarity_scale(ffhq_to_arcface_matrix(512, out_size)) * 512)


def warp_ffhq_to_arcface(faces: torch.Tensor, out_size: int = ARCFACE_SIZE) -> torch.Tensor:
    """Warp (B, C, S, S) FFHQ-aligned faces to the ArcFace template at `out_size`, in fp32, keeping gradients.

    Large crops are first shrunk with an antialiased bilinear resize to about the output scale, so that the
    bilinear warp (same pixel-centre convention as cv2.warpAffine) samples without aliasing.
    """
    if faces.ndim != 4 or faces.shape[-1] != faces.shape[-2]:
        raise ValueError(f"expected square (B, C, S, S) faces, got {tuple(faces.shape)}")
    x = faces.float()
    work = _work_size(out_size)
    if x.shape[-1] > work:
        x = F.interpolate(x, size=(work, work), mode="bilinear", align_corners=False, antialias=True)
    m = torch.as_tensor(ffhq_to_arcface_matrix(x.shape[-1], out_size), dtype=torch.float32, device=x.device)
    m = m.unsqueeze(0).expand(x.shape[0], 2, 3)
    return warp_affine(x, m, dsize=(out_size, out_size), mode="bilinear", padding_mode="border", align_corners=True)
