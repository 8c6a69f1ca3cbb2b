"""At which synthesis level does a restored face's eye/mouth detail go wrong? Fine detail by level, in and out of the boxes.

    python benchmarks/synthesis_levels.py --models runs/psp-256-r4/chunk3/psp-256-export --grid outputs/levels.png

The StyleGAN2 decoder builds its image as a running RGB sum (the to-RGB skip), one level per resolution. On the
first --samples sharp test faces (severe, K = 3 own references) this reads that sum at every level from 32 px up and
prints, per level, its fine detail (mean |x - 3x3 box mean|) over the target's at the same size (area-downsampled),
inside the eye/mouth boxes (the component losses' boxes) and outside them. A model that adds speckle in the eyes and
mouth shows components >> rest; the first level where that happens is where it is made (a level the grown model
inherited, or one it learned fresh). `--grid` writes target, output and each level's sum (upsampled) per face.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_use import model_and_face_arguments, test_batch  # a sibling script: the same faces and options

from psp_hub.common import tensor_to_image
from psp_hub.models import PSPGAN


def fine_detail(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) -> (B, 1, S, S) per-pixel detail: |x - its 3x3 box mean|, averaged over colour."""
    return (x - F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).abs().mean(1, keepdim=True)


def box_mask(boxes: torch.Tensor, size: int, full: int) -> torch.Tensor:
    """(B, 3, 4) boxes at `full` px -> (B, 1, size, size) bool, True inside any box."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * full / size
    b = boxes[..., None]
    inside_x = (coords >= b[:, :, 0]) & (coords <= b[:, :, 2])  # (B, 3, size)
    inside_y = (coords >= b[:, :, 1]) & (coords <= b[:, :, 3])
    return (inside_y[..., :, None] & inside_x[..., None, :]).any(1, keepdim=True)


@torch.no_grad()
def level_sums(model: PSPGAN, batch: dict) -> dict[int, torch.Tensor]:
    """The decoder's running RGB sum at each resolution (the last one is the output)."""
    sums: dict[int, torch.Tensor] = {}
    g = model.generator
    hooks = [m.register_forward_hook(lambda _, __, out: sums.__setitem__(out.shape[-1], out)) for m in g.to_rgbs]
    try:
        model(batch["lq"], batch["refs"], batch["ref_mask"])
    finally:
        for h in hooks:
            h.remove()
    return sums


def _ratio(made: torch.Tensor, real: torch.Tensor, where: torch.Tensor) -> float:
    return (made[where].mean() / real[where].mean().clamp_min(1e-8)).item()


def detail_by_level(sums: dict[int, torch.Tensor], batch: dict, min_size: int = 32) -> dict[int, dict[str, float]]:
    """Per level: fine detail over the target's at that size, in the eye/mouth boxes and elsewhere."""
    target, full = batch["target"], batch["target"].shape[-1]
    report = {}
    for size, x in sorted(sums.items()):
        if size < min_size:
            continue
        ref = F.interpolate(target, size=size, mode="area") if size != full else target
        inside = box_mask(batch["boxes"], size, full)
        made, real = fine_detail(x), fine_detail(ref)
        report[size] = {
            "components": round(_ratio(made, real, inside), 3),
            "rest": round(_ratio(made, real, ~inside), 3),
        }
    return report


def level_grid(sums: dict[int, torch.Tensor], target: torch.Tensor, path: str, min_size: int = 64) -> None:
    """One row per face: target, then each level's sum from `min_size` up, upsampled to the target's size."""
    full = target.shape[-1]
    cols = [target] + [
        F.interpolate(x, size=full, mode="bilinear", align_corners=False)
        for s, x in sorted(sums.items())
        if s >= min_size
    ]
    rows = [np.concatenate([tensor_to_image(c[i]) for c in cols], axis=1) for i in range(target.shape[0])]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main() -> None:
    parser = model_and_face_arguments(__doc__)
    parser.add_argument("--grid", help="write the level grid of the last model here")
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = test_batch(args.data, args.size, args.samples)
    for name in args.models:
        sums = level_sums(PSPGAN.from_pretrained(name).eval(), batch)
        print(json.dumps({"model": name, "faces": int(batch["lq"].shape[0]), "detail": detail_by_level(sums, batch)}))
    if args.grid:
        level_grid(sums, batch["target"], args.grid)


if __name__ == "__main__":
    main()
