"""Differentiable warp of FFHQ-aligned faces onto the ArcFace 112 template: a fixed similarity, so its sampling
grid (kornia's normalisation of the pixel matrix) is made once per size and device and each call is one
`grid_sample`. Inside a compiled training step the work size and the matrix are constants to Dynamo (the similarity
fit behind them is numpy, on which Dynamo split one warp into 15 graphs)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from kornia.geometry.conversions import convert_affinematrix_to_homography, normalize_homography

from psp_hub.common.geometry import ARCFACE_SIZE, similarity_scale

from .templates import ffhq_to_arcface_matrix


def _compile_constant(maxsize: int):
    """Decorator: the function's results are cached per argument and, to torch.compile, constants of the graph.
    (Dynamo traces into an lru_cache wrapper itself, and `assume_constant_result` does not hold on one, so the mark
    goes on a plain function around the cache.)"""

    def decorate(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @torch.compiler.assume_constant_result
        @functools.wraps(fn)
        def constant(*args):
            return cached(*args)

        return constant

    return decorate


@_compile_constant(maxsize=8)
def _work_size(out_size: int) -> int:
    """The FFHQ crop side at which the warp to `out_size` is about 1:1, so that bilinear sampling does not alias
    (fixed per size: the similarity fit behind it took ~100 us of host time on every call)."""
    return math.ceil(similarity_scale(ffhq_to_arcface_matrix(512, out_size)) * 512)


@_compile_constant(maxsize=32)
def _output_to_source(in_size: int, out_size: int) -> tuple[float, ...]:
    """The warp's 2x3 matrix from normalised output to normalised source coordinates (align_corners), row by row:
    kornia's normalisation of the pixel matrix, in float64 (a compiled graph recompiles on any change of size)."""
    m = torch.as_tensor(ffhq_to_arcface_matrix(in_size, out_size), dtype=torch.float64)[None]
    homography = convert_affinematrix_to_homography(m)
    dst_from_src = normalize_homography(homography, (in_size, in_size), (out_size, out_size), align_corners=True)
    return tuple(torch.linalg.inv(dst_from_src)[0, :2, :].flatten().tolist())


def _grid(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """(1, out_size, out_size, 2) `grid_sample` coordinates (align_corners) of the warp from an in_size FFHQ crop."""
    theta = torch.tensor(_output_to_source(in_size, out_size), dtype=torch.float64, device=device).view(1, 2, 3)
    return F.affine_grid(theta, [1, 1, out_size, out_size], align_corners=True).to(torch.float32)


@functools.lru_cache(maxsize=32)
def sampling_grid(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """`_grid`, made once per size and device for eager calls: kornia's `warp_affine` rebuilt it from the matrix on
    every call (~90 small eager operators a training step's identity loss dispatched each time, per the CPU host
    profile in docs/speed.md). Compiled code builds it in its graph from constants instead, where inductor folds it."""
    # a first call under inference_mode (the pipeline) must not cache an inference tensor: training's identity
    # loss saves the grid for backward, which inference tensors refuse
    with torch.inference_mode(False), torch.no_grad():
        return _grid(in_size, out_size, device)


def warp_ffhq_to_arcface(faces: torch.Tensor, out_size: int = ARCFACE_SIZE) -> torch.Tensor:
    """Warp (B, C, S, S) FFHQ-aligned faces to the ArcFace template at `out_size`, in fp32, keeping gradients.

    Large crops are first shrunk with an antialiased bilinear resize to about the output scale, so that the
    bilinear warp (same pixel-centre convention as cv2.warpAffine, border replicated) samples without aliasing.
    """
    if faces.ndim != 4 or faces.shape[-1] != faces.shape[-2]:
        raise ValueError(f"expected square (B, C, S, S) faces, got {tuple(faces.shape)}")
    x = faces.float()
    work = _work_size(out_size)
    if x.shape[-1] > work:
        x = F.interpolate(x, size=(work, work), mode="bilinear", align_corners=False, antialias=True)
    in_size = x.shape[-1]
    grid = (
        _grid(in_size, out_size, x.device)
        if torch.compiler.is_compiling()
        else sampling_grid(in_size, out_size, x.device)
    )
    grid = grid.expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
