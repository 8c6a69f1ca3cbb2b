"""StyleGAN's [1, 3, 3, 1] filter along one axis as shifted strided slices, the form compiled graphs use: inductor
reads the input through the four slices in place, one fused kernel per axis, where `avg_pool2d` box means leave a
realised buffer per box mean and `F.interpolate`'s decomposition an atomic scatter in its backward."""

from __future__ import annotations

import torch


def filter_1331(x: torch.Tensor, dim: int, gain: float, stride: int = 1) -> torch.Tensor:
    """gain * (x[s*i] + 3 x[s*i+1] + 3 x[s*i+2] + x[s*i+3]) along `dim` for each valid i: (n - 4) // s + 1 outputs.

    The symmetric pairs are added first, so each output is two multiplies."""
    count = (x.shape[dim] - 4) // stride + 1

    def tap(start: int) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        index[dim] = slice(start, start + stride * (count - 1) + 1, stride)
        return x[tuple(index)]

    return gain * (tap(0) + tap(3)) + (3 * gain) * (tap(1) + tap(2))
