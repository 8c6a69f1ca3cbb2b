"""The comparison grid: one row per face, one column per method, one block per degradation level."""

from __future__ import annotations

from pathlib import Path

import torch

from psp_hub.common import to_unit

from .restorers import Restorer


def grid_columns(outputs: dict, lq, target, restorers: list[Restorer], kmax: int, n: int) -> dict[str, torch.Tensor]:
    """The grid's columns for the first n faces: input, bicubic, [compare model K=max], K=0, K=max, target,
    [K=max with another person's references]."""
    names = ["bicubic"] + [f"{r.prefix}K={kmax}" for r in restorers[1:]] + ["K=0", f"K={kmax}"]
    columns = {"input": lq} | {name: outputs[name] for name in names if name in outputs} | {"target": target}
    if f"K={kmax}, other person" in outputs:
        columns[f"K={kmax}, other person"] = outputs[f"K={kmax}, other person"]
    return {name: images[:n] for name, images in columns.items()}


def save_grid(grids: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """Rows: faces; columns: grid_columns' (input ... target); one block per level, stacked."""
    from torchvision.utils import make_grid, save_image

    blocks = []
    for columns in grids.values():
        cols = torch.stack([c.float().cpu() for c in columns.values()], dim=1)  # (n, columns, 3, S, S)
        blocks.append(cols.flatten(0, 1))
    ncols = len(next(iter(grids.values())))
    save_image(make_grid(to_unit(torch.cat(blocks)), nrow=ncols, padding=2), str(path))
