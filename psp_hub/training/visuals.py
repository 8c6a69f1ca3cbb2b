"""Image grids for logging: rows of input / references / output / target."""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.utils import make_grid, save_image

from psp_hub.common.images import to_unit


def restoration_grid(images: dict[str, torch.Tensor]) -> torch.Tensor:
    """One row per sample: each entry of `images` (refs flattened side by side), resized to a common size."""
    size = max(v.shape[-1] for v in images.values())
    rows = []
    n = next(iter(images.values())).shape[0]
    for i in range(n):
        cells = []
        for v in images.values():
            cells.extend(v[i] if v.dim() == 5 else [v[i]])
        cells = [F.interpolate(to_unit(c).cpu()[None], size=(size, size), mode="nearest")[0] for c in cells]
        rows.append(torch.stack(cells))
    per_row = max(r.shape[0] for r in rows)
    rows = [torch.cat([r, torch.zeros(per_row - r.shape[0], *r.shape[1:])]) for r in rows]
    return make_grid(torch.cat(rows), nrow=per_row, padding=2)


def save_grid(grid: torch.Tensor, path) -> None:
    """Write a [0, 1] grid from restoration_grid as an image file (format from the suffix)."""
    save_image(grid, str(path))
