"""The one conversion between images (uint8 or [0, 1] float, HWC, numpy or PIL) and model tensors in [-1, 1] (CHW),
and the small range rules around it (0..255 floats to uint8, [-1, 1] <-> [0, 1] on tensors)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def _as_array(image) -> np.ndarray:
    """A PIL image (converted to RGB) or array-like as a numpy array."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL, imported only by callers that have it
        image = image.convert("RGB")
    return np.asarray(image)


def image_to_tensor(images, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W, C) or (N, H, W, C) images -> float32 (C, H, W) or (N, C, H, W) in [-1, 1].

    Takes uint8 (0..255) or float ([0, 1]) numpy arrays, PIL images, or a list of either (stacked into a batch).
    """
    if isinstance(images, Sequence) and not isinstance(images, np.ndarray):
        arr = np.stack([_as_array(im) for im in images])
    else:
        arr = _as_array(images)
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected (H, W, C) or (N, H, W, C) images, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr) if arr.flags.writeable else arr.copy()  # PIL's arrays are read-only
    t = torch.from_numpy(arr).movedim(-1, -3)
    t = t.float().div(127.5).sub(1.0) if arr.dtype == np.uint8 else t.float().mul(2.0).sub(1.0)
    return t.contiguous().to(device) if device is not None else t.contiguous()


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (N, C, H, W) tensors in about [-1, 1] -> (H, W, C) or (N, H, W, C) uint8 numpy (clamped, rounded)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    u8 = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return u8.movedim(-3, -1).cpu().numpy()


def tensor_to_pil(x: torch.Tensor):
    """One (C, H, W) tensor in [-1, 1] -> a PIL image; a batch (N, C, H, W) -> a list of them."""
    from PIL import Image

    arr = tensor_to_image(x)
    if arr.ndim == 4:
        return [Image.fromarray(a) for a in arr]
    return Image.fromarray(arr)


def signed_to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], differentiable and unclamped (for networks that want [0, 1] inputs)."""
    return (x + 1) / 2


def unit_to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], differentiable and unclamped (for losses and metrics that accept either range)."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] float32, clamped, detached (for save_image and grids); stays on its device."""
    return signed_to_unit(x.detach().float()).clamp(0, 1)


def round_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixel values on the 0..255 scale -> uint8: rounded (half to even, np.rint) and clipped."""
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """`x` at size x size by area averaging (an exact box filter for power-of-two steps); as is if already there.

    How a face native at a smaller size is compared with a larger output, in training and in the evaluation."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """`x` (..., C, H, W) at size x size by antialiased bilinear, in one step from any size; as is if already there.

    How faces of any size reach a network's fixed input: the model's input and references, the ONNX graphs' feeds
    and the identity gate's embedder, so all three see the same pixels."""
    if x.shape[-2:] == (size, size):
        return x
    flat = x.flatten(0, -4) if x.ndim > 4 else x
    out = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*x.shape[:-2], size, size)
