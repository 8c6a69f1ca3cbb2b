"""Whole photos of held-out people, degraded and restored through the pipeline: identity, references, face detail.

    python benchmarks/whole_photo.py                          # 8 London Set people, bundled model, CPU
    python benchmarks/whole_photo.py --people 24 --model <256 px model folder> --json out.json

Photos: the Face Research Lab London Set's raw 1350 px studio photos (`data/raw/london`, see docs/data.md; all of its
people are test people of data/sharp256). For each person the neutral photo, resized whole so the face is 256 px
wide (`--face-px`), is the clean original, and the smiling photo (full size) the reference. The clean photo is
degraded at 2x and 4x, 'mild' (area downsample, JPEG 90) or 'severe' (Gaussian blur of sigma 0.5 x scale first,
then noise of std 6 levels, JPEG 60), and restored at the same upscale with its reference and blind, with the
pipeline's default settings. Per face it reports:
- identity: ArcFace cosine (the pipeline's identity network) and dlib distance between the face's aligned crop of the
  output and of the clean original; bicubic's as the bar (restoration should not be further from the person);
- references vs blind: the same with and without the reference (and whether the pipeline kept the reference);
- detail: face-box variance of the Laplacian, output over a Lanczos resize (benchmarks/never_worse.py's measure).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psp_hub.common.imageio import load_image
from psp_hub.common.paths import REPO_ROOT
from psp_hub.data.degradation import gaussian_blur, jpeg_roundtrip
from psp_hub.face.alignment import warp_to_crop
from psp_hub.face.paste import crop_to_photo
from psp_hub.metrics import DlibIdentity, laplacian_variance
from psp_hub.pipeline import RestorationPipeline
from psp_hub.pipeline.background import ResizeUpscaler, output_size

LONDON = REPO_ROOT / "data" / "raw" / "london" / "inst"
LEVELS = {"mild": (0.0, 0.0, 90), "severe": (0.5, 6.0, 60)}
"""level: (blur sigma as a multiple of the scale, noise std in levels at low resolution, JPEG quality)."""


@dataclass
class FaceRow:
    """One restored face of one degraded photo."""

    person: str
    level: str
    scale: float
    face_px: int  # face box width in the degraded photo
    mode: str  # "references" or "blind"
    references_kept: bool
    arcface: float  # cosine to the clean original's face (higher = closer)
    arcface_bicubic: float
    dlib: float  # dlib distance to the clean original's face (lower = closer)
    dlib_bicubic: float
    detail: float  # face-box detail over Lanczos


def london_people(n: int) -> list[tuple[str, Path, Path]]:
    """n people evenly spread over the London Set: (id, neutral photo, smiling photo)."""
    neutral = {p.name.split("_")[0]: p for p in sorted((LONDON / "neutral_front").glob("*.jpg"))}
    smiling = {p.name.split("_")[0]: p for p in sorted((LONDON / "smiling_front").glob("*.jpg"))}
    both = sorted(set(neutral) & set(smiling))
    if not both:
        raise SystemExit(f"no London Set photos under {LONDON}: run train/data/extract_sources.sh (docs/data.md)")
    pick = np.linspace(0, len(both) - 1, min(n, len(both))).round().astype(int)
    return [(both[i], neutral[both[i]], smiling[both[i]]) for i in sorted(set(pick))]


def at_face_width(pipe: RestorationPipeline, photo: np.ndarray, face_px: int) -> np.ndarray:
    """The whole photo resized (area) so its largest face box is `face_px` wide: a clean original of that face size.

    The London Set's faces span ~430 px; scaled to 256 a 2x / 4x degradation leaves 128 / 64 px faces, where the
    restoration (and the identity networks, which see 112-150 px) have something to recover."""
    width = max(float(f.box[2] - f.box[0]) for f in pipe.detect(photo))
    h, w = photo.shape[:2]
    s = face_px / width
    return cv2.resize(photo, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def degrade_photo(clean: np.ndarray, scale: float, level: str, seed: int) -> np.ndarray:
    """The clean RGB uint8 photo made `scale` times smaller and degraded at `level` (LEVELS)."""
    sigma, noise, quality = LEVELS[level]
    h, w = clean.shape[:2]
    img = gaussian_blur(clean, sigma * scale)
    low = cv2.resize(img, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = low + np.random.default_rng(seed).normal(0.0, noise, low.shape) if noise else low
    out = jpeg_roundtrip(np.clip(low, 0, 255) / 255.0, quality)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def aligned_crop(image: np.ndarray, face, scale: float, size: int) -> np.ndarray:
    """The face's aligned crop taken from an image `scale` times the size of the photo it was detected in."""
    return warp_to_crop(image, cv2.invertAffineTransform(crop_to_photo(face.affine, scale)), size)


def measure(pipe, dlib_net, clean, low, refset, scale) -> list[dict]:
    """Restore `low` with `refset` (or blind when None): per face, identity to the clean photo and detail."""
    result = pipe.restore(low, refset, upscale=scale)
    h, w = result.image.shape[:2]
    clean_big = cv2.resize(clean, (w, h), interpolation=cv2.INTER_LANCZOS4)
    bicubic = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    lanczos = ResizeUpscaler("lanczos")(low, output_size(low.shape, result.report["upscale"]))
    rows = []
    for f in result.faces:
        crops = [aligned_crop(im, f, w / low.shape[1], pipe.size) for im in (result.image, bicubic, clean_big)]
        emb = pipe.identity.embed(crops)
        dist = dlib_net.distance(crops[:2], [crops[2]] * 2)
        box = f.box * (w / low.shape[1])
        rows.append(
            {
                "face_px": round(float(f.box[2] - f.box[0])),
                "references_kept": bool(f.references_used),
                "arcface": round(float(emb[0] @ emb[2]), 4),
                "arcface_bicubic": round(float(emb[1] @ emb[2]), 4),
                "dlib": round(float(dist[0]), 4),
                "dlib_bicubic": round(float(dist[1]), 4),
                "detail": round(laplacian_variance(result.image, box) / max(laplacian_variance(lanczos, box), 1e-6), 3),
            }
        )
    return rows


def run(pipe: RestorationPipeline, people: int, scales: list[float], levels: list[str], face_px: int) -> list[FaceRow]:
    """Every person x level x scale, restored with the reference and blind."""
    dlib_net = DlibIdentity()
    rows = []
    for person, neutral, smiling in london_people(people):
        clean = at_face_width(pipe, load_image(neutral), face_px)
        refset = pipe.prepare_references([smiling], names=[smiling.name])
        for level in levels:
            for scale in scales:
                low = degrade_photo(clean, scale, level, seed=int(person))
                for mode, refs in (("references", refset), ("blind", None)):
                    for r in measure(pipe, dlib_net, clean, low, refs, scale):
                        rows.append(FaceRow(person=person, level=level, scale=scale, mode=mode, **r))
                        print(rows[-1], flush=True)
    return rows


def summary(rows: list[FaceRow]) -> list[str]:
    """Per level, scale and mode: means of identity (output and bicubic) and the median detail ratio."""
    lines = [
        "| level | scale | mode | faces | refs kept | ArcFace ↑ | bicubic | dlib ↓ | bicubic | detail vs Lanczos (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = sorted({(r.level, r.scale, r.mode) for r in rows}, key=lambda k: (list(LEVELS).index(k[0]), k[1], k[2]))
    for level, scale, mode in keys:
        g = [r for r in rows if (r.level, r.scale, r.mode) == (level, scale, mode)]
        mean = {k: np.mean([getattr(r, k) for r in g]) for k in ("arcface", "arcface_bicubic", "dlib", "dlib_bicubic")}
        lines.append(
            f"| {level} | {scale:g}x | {mode} | {len(g)} | {sum(r.references_kept for r in g)} | "
            f"{mean['arcface']:.3f} | {mean['arcface_bicubic']:.3f} | {mean['dlib']:.3f} | {mean['dlib_bicubic']:.3f} | "
            f"{np.median([r.detail for r in g]):.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=8)
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0])
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    ap.add_argument("--model", default=None, help="Hub id or folder (default: PSP_MODEL or the bundled model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--face-px", type=int, default=256, help="face width of the clean original (photo resized)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and the table here")
    ap.add_argument("--fidelity", type=float, default=None, help="the pipeline's fidelity (default: its own, 0.25)")
    args = ap.parse_args(argv)
    pipe = RestorationPipeline.from_pretrained(args.model, device=args.device)
    if args.fidelity is not None:
        pipe.config = replace(pipe.config, fidelity=args.fidelity)
    rows = run(pipe, args.people, args.scales, args.levels, args.face_px)
    table = summary(rows)
    print("\n".join(table))
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
