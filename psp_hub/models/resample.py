"""x2 resampling for the U-Nets and the decoder: bilinear upsampling, with the form it takes inside compiled
training steps, and bilinear downsampling as the 2x2 mean it is.

Inductor decomposes `F.interpolate`'s bilinear upsampling into index gathers, so its backward becomes an `index_put`
with accumulation: an atomic scatter of four adds per output pixel. In the compiled prior-256 step on an H200 that
was the largest kernel, 27 of the step's 140 GPU-ms (the 256 px StyleConv's input, batch 128; 37 ms with two
reductions fused to it), and in psp-256 six such kernels took 23 of 120. The same gradient is a gather: the
[1, 3, 3, 1] / 4 taps at stride 2 along each axis of the output gradient, its edges clamped (the upsampling's
transpose), which inductor fuses into pointwise kernels. Compiled training takes that gradient (prior-256 on the
H200: 705 -> 871 images/s); eager code, inference and the ONNX export keep PyTorch's own kernels.

The whole upsampling as shifted slices and an interleave (`upsample2x_slices`) was faster timed alone (2.4 ms
against 5.0 forward + backward at (128, 64, 128, 128) bf16) but slower in the compiled prior-256 step (698 against
733 images/s, one machine, synthetic batches): at the 256 px StyleConv its fused kernel (slices, interleave and the
channels-last copy) alone took 8 ms a step. It stays for the benchmark.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from psp_hub.common.fir import filter_1331


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling (half-pixel centres), the decoder's and the U-Nets' one form of it (outside training's
    compiled graphs, e.g. in the ONNX export's trace, the plain interpolation)."""
    if torch.compiler.is_compiling() and torch.is_grad_enabled() and x.requires_grad:
        return upsample2x_gather_grad(x)
    return interpolate2x(x)


def interpolate2x(x: torch.Tensor) -> torch.Tensor:
    """`F.interpolate`'s bilinear x2 with its own gradient (compiled: an atomic scatter)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def upsample2x_slices(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 as shifted slices and an interleave, one axis at a time, in the input's memory format (a
    channels-last input stays channels-last, so the next convolution gets no layout conversion)."""
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    out = _interleave_axis(_interleave_axis(x, 2), 3)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _interleave_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x2 along `dim`: out[2i] = x[i-1]/4 + 3x[i]/4, out[2i+1] = 3x[i]/4 + x[i+1]/4, the edges clamped."""
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    even, odd = 0.25 * before + 0.75 * x, 0.75 * x + 0.25 * after
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def upsample2x_gather_grad(x: torch.Tensor) -> torch.Tensor:
    """`interpolate2x` whose gradient is `upsample2x_transpose`, a gather."""
    return _UpsampleWithGatherGrad.apply(x)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear /2 downsampling (half-pixel centres, no antialiasing) as the 2x2 mean it is (the same to fp32
    rounding, odd sizes included): compiled, the bilinear form's backward is an accumulating `index_put`,
    `avg_pool2d`'s a gather."""
    return F.avg_pool2d(x, 2)


def upsample2x_transpose(grad: torch.Tensor) -> torch.Tensor:
    """The transpose of `upsample2x` applied to a (B, C, 2H, 2W) gradient: (B, C, H, W).

    Along one axis the upsampling writes out[2i] = x[i-1]/4 + 3x[i]/4 and out[2i+1] = 3x[i]/4 + x[i+1]/4 with the
    edges clamped, so x[i] collects g[2i-1]/4 + 3g[2i]/4 + 3g[2i+1]/4 + g[2i+2]/4, where the clamped edges read g[-1]
    as g[0] and g[2n] as g[2n-1]."""
    return _transpose_along(_transpose_along(grad, 2), 3)


def _transpose_along(g: torch.Tensor, dim: int) -> torch.Tensor:
    """`upsample2x_transpose` along one axis: the taps over a zero border, plus each edge's own clamped quarter. All
    pads and slices, so inductor reads `g` in place (a replicated border built by `cat` was a realised copy of the
    gradient: 130 MB at batch 8 in the prior-128 generator's backward)."""
    n = g.shape[dim] // 2
    taps = filter_1331(_pad_along(g, dim, 1, 1), dim, 0.25, stride=2)
    first, last = g.narrow(dim, 0, 1), g.narrow(dim, 2 * n - 1, 1)
    return taps + 0.25 * (_pad_along(first, dim, 0, n - 1) + _pad_along(last, dim, n - 1, 0))


def _pad_along(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """Zero padding of one axis (`dim` counted from the front, >= 0)."""
    pads = [0, 0] * (x.dim() - dim)
    pads[-2:] = [before, after]
    return F.pad(x, pads)


class _UpsampleWithGatherGrad(torch.autograd.Function):
    """`F.interpolate`'s x2 bilinear upsampling whose gradient is `upsample2x_transpose` (differentiable again, for
    double backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return interpolate2x(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return upsample2x_transpose(grad)
