"""Batches onto the training device, and the memory layout (NCHW or channels-last) of batches and networks."""

from __future__ import annotations

import torch

IMAGE_KEYS = ("lq", "target", "gan_real")  # a batch's (B, 3, S, S) images: a channels-last step wants them so


def batch_to_device(batch: dict, device, channels_last: bool = False) -> dict:
    """A copy of `batch` on `device` (non-blocking, so pinned batches overlap the step); strings stay as they are.

    With `channels_last` the image tensors are also laid out NHWC, the layout the channels-last networks take without
    a conversion kernel of their own.
    """
    out = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            value = batch_to_device(value, device)
        elif torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
            if channels_last and key in IMAGE_KEYS and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


@torch.no_grad()
def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Lay out every 4-D parameter and buffer of `module` NHWC, in place (`Module.to(memory_format=...)` refuses
    modules that also hold 5-D tensors, as the modulated convolutions' weights are)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.ndim == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module
