"""Facial-component boxes from 5 landmarks and differentiable crops (roi_align) for the component discriminators."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

COMPONENTS = ("left_eye", "right_eye", "mouth")


@dataclass(frozen=True)
class ComponentBoxConfig:
    """Box sides as a fraction of the face size (the FFHQ crop side the landmarks imply).

    GFPGAN crops eyes with half-side max(eye width / 2, 16) * 1.4 and the mouth with max(mouth width / 2, 16)
    from 68 landmarks on 512 px FFHQ faces, which comes to about 80 px per eye and 120 px for the mouth; its
    roi_align output sizes are exactly 80 and 120 per 512. From 5 points we centre the eye boxes on the eye
    landmarks and the mouth box on the mouth-corner midpoint, with sides 80/512 and 120/512 of the face size.
    """

    eye_size: float = 80.0 / 512.0
    mouth_size: float = 120.0 / 512.0


# Inter-ocular distance of the FFHQ 5-point template as a fraction of the crop side (125.92 px at 512).
_FFHQ_EYE_DISTANCE = 125.92161 / 512.0


def component_boxes_from_landmarks(landmarks: torch.Tensor, size: int | None = None,
                                   config: ComponentBoxConfig = ComponentBoxConfig()) -> torch.Tensor:
    """(B, 5, 2) landmarks (left eye, right eye, nose, left/right mouth corner; pixels) -> (B, 3, 4) x1, y1, x2, y2.

    The face size is taken from the inter-ocular distance (so jittered or scaled faces get matching boxes);
    `size`, if given, is the crop side and boxes are clamped to it. Order of boxes: COMPONENTS. After a
    horizontal flip, swap the eye landmarks first so that "left_eye" stays the image-left one.
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"expected (B, 5, 2) landmarks, got {tuple(landmarks.shape)}")
    lm = landmarks.float()
    face = (lm[:, 1] - lm[:, 0]).norm(dim=-1) / _FFHQ_EYE_DISTANCE  # (B,) implied face-crop side
    centres = torch.stack([lm[:, 0], lm[:, 1], (lm[:, 3] + lm[:, 4]) / 2], dim=1)  # (B, 3, 2)
    sides = torch.stack([face * config.eye_size, face * config.eye_size, face * config.mouth_size], dim=1)
    half = (sides / 2).unsqueeze(-1)
    boxes = torch.cat([centres - half, centres + half], dim=-1)
    if size is not None:
        boxes = boxes.clamp(0, float(size))
    return boxes


def default_component_sizes(size: int) -> dict[str, int]:
    """GFPGAN's roi_align output sizes (eyes 80, mouth 120 at 512 px) scaled to a `size` px face."""
    cfg = ComponentBoxConfig()
    eye, mouth = round(cfg.eye_size * size), round(cfg.mouth_size * size)
    return {"left_eye": eye, "right_eye": eye, "mouth": mouth}


def crop_components(images: torch.Tensor, boxes: torch.Tensor,
                    out_size: int | dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Crop (B, 3, S, S) images at (B, 3, 4) boxes to {component: (B, 3, s, s)} with roi_align (differentiable).

    Boxes are continuous pixel coordinates (a box 0, 0, S, S is the whole image: roi_align aligned=True).
    `out_size` is one side for all components, a per-component dict, or None for default_component_sizes(S).
    """
    if boxes.ndim != 3 or boxes.shape[1:] != (len(COMPONENTS), 4) or boxes.shape[0] != images.shape[0]:
        raise ValueError(f"expected ({images.shape[0]}, 3, 4) boxes, got {tuple(boxes.shape)}")
    if out_size is None:
        out_size = default_component_sizes(images.shape[-1])
    sizes = out_size if isinstance(out_size, dict) else {name: int(out_size) for name in COMPONENTS}
    boxes = boxes.to(device=images.device, dtype=images.dtype if images.is_floating_point() else torch.float32)
    crops: dict[str, torch.Tensor] = {}
    for i, name in enumerate(COMPONENTS):
        s = int(sizes[name])
        crops[name] = roi_align(images, [b for b in boxes[:, i : i + 1]], output_size=(s, s),
                                spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return crops
