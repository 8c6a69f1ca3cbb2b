"""Whole photos side by side: the face region of held-out people's degraded photos restored by each model, for a reader.

    python benchmarks/whole_photo_grid.py --models checkpoints/psp-gan-128 runs/psp-256-r7/chunk3/psp-256-export \
        --people 6 --level severe --scale 4 --out outputs/whole-photo-grid.png

The photos and degradation are benchmarks/whole_photo.py's (London Set test people; the neutral photo, resized so the
face is 256 px wide, is the clean original; the smiling photo the reference). Per person, one row of the same square
around the face: the degraded photo (nearest-neighbour, what the user has), a Lanczos resize, each model's
restoration through RestorationPipeline at default settings with the reference, and the clean original.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from whole_photo import LEVELS, at_face_width, degrade_photo, london_people  # a sibling script: the same photos

from psp_hub.common.imageio import load_image
from psp_hub.pipeline import RestorationPipeline
from psp_hub.pipeline.background import ResizeUpscaler, output_size

TILE = 256


def face_square(box: np.ndarray, shape: tuple[int, ...], margin: float = 1.15) -> tuple[int, int, int, int]:
    """A square `margin` times the face box's larger side around its centre, moved (not cut) to fit the image."""
    side = min(int(max(box[2] - box[0], box[3] - box[1]) * margin), shape[0], shape[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(np.clip(cx - side / 2, 0, shape[1] - side))
    y0 = int(np.clip(cy - side / 2, 0, shape[0] - side))
    return x0, y0, x0 + side, y0 + side


def person_row(pipes: list[RestorationPipeline], neutral: Path, smiling: Path, level: str, scale: float, seed: int):
    """The row's tiles: degraded, Lanczos, each model's restoration, clean; or None when no model found a face."""
    clean = at_face_width(pipes[0], load_image(neutral), TILE)
    low = degrade_photo(clean, scale, level, seed)
    restored, box = [], None
    for pipe in pipes:
        result = pipe.restore(low, pipe.prepare_references([smiling], names=[smiling.name]), upscale=scale)
        restored.append(result.image)
        upscale = result.report["upscale"]  # the pipeline's (a huge photo's is capped)
        if box is None and result.faces:
            box = result.faces[0].box * (result.image.shape[1] / low.shape[1])
    if box is None:
        return None
    h, w = restored[0].shape[:2]
    nearest = cv2.resize(low, (w, h), interpolation=cv2.INTER_NEAREST)
    lanczos = ResizeUpscaler("lanczos")(low, output_size(low.shape, upscale))
    clean_big = cv2.resize(clean, (w, h), interpolation=cv2.INTER_LANCZOS4)
    x0, y0, x1, y1 = face_square(box, (h, w))
    return [cv2.resize(im[y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_AREA)
            for im in (nearest, lanczos, *restored, clean_big)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, help="Hub ids or folders, one column each")
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--level", default="severe", choices=list(LEVELS))
    ap.add_argument("--scale", type=float, default=4.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("outputs/whole-photo-grid.png"))
    args = ap.parse_args(argv)
    pipes = [RestorationPipeline.from_pretrained(m, device=args.device) for m in args.models]
    rows = []
    for person, neutral, smiling in london_people(args.people):
        row = person_row(pipes, neutral, smiling, args.level, args.scale, seed=int(person))
        print(f"person {person}: {'no face found' if row is None else 'row added'}", flush=True)
        if row is not None:
            rows.append(np.concatenate(row, axis=1))
    if not rows:
        print("no face was found in any photo: no grid", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    columns = ["degraded (nearest)", "Lanczos", *args.models, "clean original"]
    print(f"wrote {args.out}: {len(rows)} rows; columns: {', '.join(columns)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
