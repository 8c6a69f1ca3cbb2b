"""Differentiable facial-component crops (roi_align) for the component discriminators, at GFPGAN's sizes."""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

from psp_hub.common.geometry import COMPONENTS

# GFPGAN's roi_align output sizes as a fraction of the face: eyes 80 and mouth 120 px per 512 (its crops from 68
# landmarks come to about that). The boxes themselves come from psp_hub.common.geometry (one rule for them).
EYE_CROP = 80.0 / 512.0
MOUTH_CROP = 120.0 / 512.0


def default_component_sizes(size: int) -> dict[str, int]:
    """GFPGAN's roi_align output sizes (eyes 80, mouth 120 at 512 px) scaled to a `size` px face."""
    eye, mouth = round(EYE_CROP * size), round(MOUTH_CROP * size)
    return {"left_eye": eye, "right_eye": eye, "mouth": mouth}


def crop_components(
    images: torch.Tensor, boxes: torch.Tensor, out_size: int | dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Crop (B, 3, S, S) images at (B, 3, 4) boxes to {component: (B, 3, s, s)} with roi_align (differentiable).

    Boxes are continuous pixel coordinates (a box 0, 0, S, S is the whole image: roi_align aligned=True).
    `out_size` is one side for all components, a per-component dict, or None for default_component_sizes(S).
    """
    if boxes.ndim != 3 or boxes.shape[1:] != (len(COMPONENTS), 4) or boxes.shape[0] != images.shape[0]:
        raise ValueError(f"expected ({images.shape[0]}, 3, 4) boxes, got {tuple(boxes.shape)}")
    if out_size is None:
        out_size = default_component_sizes(images.shape[-1])
    sizes = out_size if isinstance(out_size, dict) else {name: int(out_size) for name in COMPONENTS}
    # boxes stay fp32: in bf16 a coordinate of 64-255 px rounds by 0.25-1 px, misaligning the crops; roi_align needs
    # one dtype for both, so bf16 images are cropped in fp32 and the crops cast back
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    dtype = images.dtype if images.is_floating_point() else torch.float32
    images = images.float()
    b = images.shape[0]
    index = torch.arange(b, device=images.device, dtype=boxes.dtype)[:, None]
    by_size: dict[int, list[int]] = {}  # the two eyes share a size: one roi_align call for both
    for i, name in enumerate(COMPONENTS):
        by_size.setdefault(int(sizes[name]), []).append(i)
    crops: dict[str, torch.Tensor] = {}
    for s, parts in by_size.items():
        rois = torch.cat([torch.cat([index, boxes[:, i]], dim=1) for i in parts])  # (len(parts) * B, 5)
        out = roi_align(images, rois, output_size=(s, s), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        for j, i in enumerate(parts):
            crops[COMPONENTS[i]] = out[j * b : (j + 1) * b].to(dtype)
    return {name: crops[name] for name in COMPONENTS}
