"""Is a restored photo ever worse than a plain Lanczos resize? Per-face detail and colour, on real photos.

    python benchmarks/never_worse.py                    # shared sample photos + reference photos, 1x and 2x
    python benchmarks/never_worse.py --scales 2 --json out.json

For every detected face of the shared sample photos (whole and cropped) and of the shared reference photos (sharp,
large in-the-wild faces) it prints:
- detail: variance of the Laplacian of the luma inside the face box, output over a Lanczos resize of the same photo
  (>= 0.9 everywhere is the pipeline's promise);
- ring: mean absolute change (levels) between the output and the Lanczos resize in the pasted square but outside an
  ellipse inscribed in the face box grown by 20 % (the wall around the face should not change);
- grey chroma: the same photo made greyscale, restored: the largest mean |Cr - 128| + |Cb - 128| inside a face box
  (0 = stays grey).
Blind restoration with the bundled model (or PSP_MODEL), CPU unless --device says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psp_hub.common.imageio import load_image
from psp_hub.common.paths import samples_dir
from psp_hub.face.paste import face_region
from psp_hub.metrics import laplacian_variance
from psp_hub.pipeline import RestorationPipeline
from psp_hub.pipeline.background import ResizeUpscaler, output_size


def sample_photos() -> list[Path]:
    """The shared sample photos (whole, cropped) and the reference photos (large, sharp faces)."""
    root = samples_dir()
    photos = sorted((root / "photos" / "whole").iterdir()) + sorted((root / "photos" / "cropped").iterdir())
    return photos + sorted((root / "references").glob("*/*.jpg"))


def ring_change(out: np.ndarray, ref: np.ndarray, box, region) -> float:
    """Mean |out - ref| in `region` (the pasted square) outside the ellipse inscribed in `box` grown by 20 %."""
    x0, y0, x1, y1 = region
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ax, ay = 0.6 * (box[2] - box[0]), 0.6 * (box[3] - box[1])
    outside = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 > 1.0
    diff = np.abs(out[y0:y1, x0:x1].astype(np.float32) - ref[y0:y1, x0:x1]).mean(axis=2)
    return float(diff[outside].mean()) if outside.any() else 0.0


def grey_chroma(pipe: RestorationPipeline, image: np.ndarray) -> float:
    """Largest per-face mean chroma (|Cr-128| + |Cb-128|) of the restored greyscale version of `image`."""
    grey = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    result = pipe.restore(grey, upscale=1.0)
    ycc = cv2.cvtColor(result.image, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    worst = 0.0
    for f in result.faces:
        x0, y0, x1, y1 = (round(float(v)) for v in f.box)
        crop = ycc[max(0, y0) : y1, max(0, x0) : x1]
        worst = max(worst, float(np.abs(crop[..., 1:] - 128).sum(axis=2).mean()))
    return worst


def measure_photo(pipe: RestorationPipeline, path: Path, scales: list[float]) -> list[dict]:
    """One row per face and scale: detail ratio and ring change."""
    image = load_image(path)
    rows = []
    for s in scales:
        result = pipe.restore(image, upscale=s, no_face="upscale")
        h, w = output_size(image.shape, result.report["upscale"])
        lanczos = ResizeUpscaler("lanczos")(image, (h, w))
        sx, sy = w / image.shape[1], h / image.shape[0]
        for f in result.faces:
            box = f.box * np.array([sx, sy, sx, sy])
            ref_detail = laplacian_variance(lanczos, box)
            region = face_region(f.affine, f.restored.shape[0], lanczos.shape, (sx, sy))
            rows.append(
                {
                    "photo": f"{path.parent.name}/{path.name}",
                    "face": f.index,
                    "scale": s,
                    "face_px": round(float(f.box[2] - f.box[0])),
                    "detail": round(laplacian_variance(result.image, box) / max(ref_detail, 1e-6), 3),
                    "ring": round(ring_change(result.image, lanczos, box, region), 2) if region else 0.0,
                }
            )
    return rows


def degraded_groups(n_groups: int, seed: int = 0) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Group photos of 3 held-out people (corpus test split, LFW/CelebA), each face degraded with the 'moderate'
    preset of the training degradation model: (photo, clean aligned faces left to right)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from identity_gate import group_photo, test_people

    from psp_hub.data.config import DegradationConfig
    from psp_hub.data.degradation import degrade, sample_degradation

    people = [files[0] for p, files in test_people().items() if not p.startswith("utkface:")][: 3 * n_groups]
    rng, cfg = np.random.default_rng(seed), DegradationConfig.preset("moderate")
    clean = [load_image(f) for f in people]
    low = [
        np.clip(np.rint(degrade(c, sample_degradation(cfg, rng, c.shape[0]), rng) * 255), 0, 255).astype(np.uint8)
        for c in clean
    ]
    return [(group_photo(low[i : i + 3]), clean[i : i + 3]) for i in range(0, len(low), 3)]


def fidelity_sweep(pipe: RestorationPipeline, values: list[float], n_groups: int, scale: float = 2.0) -> None:
    """Identity to the clean original and face-box detail (vs Lanczos) of degraded faces, per fidelity value."""
    from psp_hub.face.alignment import warp_to_crop
    from psp_hub.face.paste import crop_to_photo

    groups = degraded_groups(n_groups)
    print(f"\nfidelity sweep: {3 * len(groups)} degraded held-out faces in {len(groups)} group photos, {scale:g}x")
    print(f"{'fidelity':>8s} {'identity':>8s} {'detail':>7s}")
    for fid in values:
        ids, details = [], []
        for photo, clean in groups:
            result = pipe.restore(photo, upscale=scale, fidelity=fid)
            lanczos = ResizeUpscaler("lanczos")(photo, result.image.shape[:2])
            faces = sorted(result.faces, key=lambda f: f.box[0])
            if len(faces) != len(clean):
                continue
            for f, c in zip(faces, clean):
                to_crop = cv2.invertAffineTransform(crop_to_photo(f.affine, scale))
                crop = warp_to_crop(result.image, to_crop, c.shape[0])
                e = pipe.identity.embed([crop, c])
                ids.append(float(e[0] @ e[1]))
                box = f.box * scale
                details.append(laplacian_variance(result.image, box) / max(laplacian_variance(lanczos, box), 1e-6))
        print(f"{fid:8.2f} {np.mean(ids):8.3f} {np.median(details):7.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--model", default=None, help="Hub id or folder (default: PSP_MODEL or the bundled model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument(
        "--fidelity",
        type=float,
        nargs="*",
        default=None,
        help="instead: sweep these fidelity values on degraded composites of held-out corpus faces",
    )
    ap.add_argument("--groups", type=int, default=4, help="group photos (3 faces each) for --fidelity")
    args = ap.parse_args(argv)
    pipe = RestorationPipeline.from_pretrained(args.model, device=args.device)
    if args.fidelity is not None:
        fidelity_sweep(pipe, args.fidelity or [0.0, 0.25, 0.5, 0.75, 1.0], args.groups)
        return 0
    rows, greys = [], []
    print(f"{'photo':42s} {'face':>4s} {'px':>5s} {'scale':>5s} {'detail':>7s} {'ring':>6s}")
    for path in sample_photos():
        for r in measure_photo(pipe, path, args.scales):
            rows.append(r)
            print(
                f"{r['photo']:42s} {r['face']:4d} {r['face_px']:5d} {r['scale']:5g} {r['detail']:7.3f} {r['ring']:6.2f}"
            )
        if path.parent.parent.name == "photos":
            greys.append({"photo": path.name, "grey_chroma": round(grey_chroma(pipe, load_image(path)), 2)})
    for s in args.scales:
        d = [r["detail"] for r in rows if r["scale"] == s]
        ring = [r["ring"] for r in rows if r["scale"] == s]
        print(
            f"{s:g}x: {len(d)} faces, detail ratio min {min(d):.3f} median {np.median(d):.3f}, "
            f"faces below 0.9: {sum(x < 0.9 for x in d)}; ring change mean {np.mean(ring):.2f} max {max(ring):.2f}"
        )
    for g in greys:
        print(f"grey {g['photo']}: face chroma {g['grey_chroma']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"faces": rows, "grey": greys}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
