"""How close is a StyleGAN2 prior's output to real faces? The Fréchet distance on VGG-16 features (FD-VGG16,
psp_hub/metrics/frechet.py) of its samples to real faces, beside the rows that give the number a scale.

    python benchmarks/prior_fd.py --data data/sharp256 --samples 2000                        # the reference rows
    python benchmarks/prior_fd.py --data data/sharp256 --prior runs/prior-256/export --grid outputs/prior-fd

--samples N real faces of the split (a fixed random draw, --seed) are the reference set; every row compares N images
to it, since the distance is biased upward at small counts:
- `real, other faces`: N other real faces of the same split, the floor a perfect generator reaches at this count;
- `real, x4 / x8 down-up`: those other faces shrunk 4x / 8x and bicubic-upsampled back, what lost detail scores;
- each --prior: N unconditional samples (truncation 1), of a prior export (prior_ema.safetensors + prior_config.json)
  or of a PSP-GAN folder's decoder through its mapping network (not trained as a prior inside PSP-GAN).
Images are compared at --size (the data's faces and the samples resized to it, then to VGG's 224 px). The reference
set's statistics are cached under --cache. `--grid PREFIX` writes 16 samples of each prior as PREFIX-<name>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.utils import save_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psp_hub.common.images import signed_to_unit
from psp_hub.data import DataConfig, build_eval_dataset
from psp_hub.metrics import GaussianFit, VGGPoolFeatures, fit_features, frechet_distance
from psp_hub.models import PSPGAN
from psp_hub.models.prior_loading import PRIOR_CONFIG_FILE, load_prior_export
from psp_hub.training.prior_validation import fixed_code_samples, reference_draw


def down_up(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Shrunk `factor` times (area) and bicubic-upsampled back: the same faces with less detail."""
    size = images.shape[-1]
    small = F.interpolate(images, size=size // factor, mode="area")
    return F.interpolate(small, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def load_generator(source: str) -> torch.nn.Module:
    """A prior export's generator, or a PSP-GAN folder's decoder."""
    if (Path(source) / PRIOR_CONFIG_FILE).is_file():
        return load_prior_export(source)
    return PSPGAN.from_pretrained(source).generator.eval()


def sample_batches(generator, count: int, batch: int, size: int, seed: int, device):
    """`count` unconditional samples at `size`, from fixed codes (the prior validation's)."""
    for out in fixed_code_samples(generator.to(device), count, batch, seed, device):
        yield F.interpolate(out, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def first_kept(batches, keep: list):
    """The batches unchanged; the first one's first 16 images go into `keep` (for a grid)."""
    for images in batches:
        if not keep:
            keep.append(images[:16])
        yield images


def reference_fit(args, net, faces, indices: np.ndarray) -> GaussianFit:
    """The reference set's fit, from the cache when it is there."""
    name = f"{Path(args.data).name}-{args.split}-{args.size}px-n{args.samples}-seed{args.seed}.npz"
    path = Path(args.cache) / name
    if path.is_file():
        return GaussianFit.load(path)
    reference = fit_features((b.to(args.device) for b in faces.face_batches(indices, args.batch)), net)
    path.parent.mkdir(parents=True, exist_ok=True)
    reference.save(path)
    return reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/sharp256")
    parser.add_argument("--split", default="train")
    parser.add_argument("--samples", type=int, default=2000, help="images per set (the reference set too)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--prior", nargs="*", default=[], help="prior exports or PSP-GAN folders")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="outputs/fd-cache")
    parser.add_argument("--grid", default=None, help="prefix of the sample grids")
    parser.add_argument("--json", default=None, help="write the rows here as well")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    net = VGGPoolFeatures().to(args.device)
    faces = build_eval_dataset(DataConfig(path=args.data, out_size=args.size, max_references=0), args.split)
    if len(faces) < 2 * args.samples:
        sys.exit(f"{args.data} {args.split} has {len(faces)} faces: --samples {args.samples} needs {2 * args.samples}")
    drawn, others = reference_draw(len(faces), args.samples, args.seed)
    reference = reference_fit(args, net, faces, drawn)
    rows = []

    def row(name: str, batches, grid: str | None = None) -> None:
        t0, keep = time.perf_counter(), []
        fd = frechet_distance(reference, fit_features(first_kept((b.to(args.device) for b in batches), keep), net))
        rows.append({"set": name, "fd_vgg16": round(fd, 3), "images": args.samples})
        print(f"{name}: FD-VGG16 {fd:.3f} ({args.samples} images, {time.perf_counter() - t0:.0f} s)", flush=True)
        if grid:
            save_image(signed_to_unit(keep[0].cpu()), grid, nrow=4)

    row("real, other faces", faces.face_batches(others, args.batch))
    for factor in (4, 8):
        row(f"real, x{factor} down-up", (down_up(b, factor) for b in faces.face_batches(others, args.batch)))
    for source in args.prior:
        grid = f"{args.grid}-{source.strip('/').replace('/', '_')}.png" if args.grid else None
        generator = load_generator(source)
        batches = sample_batches(generator, args.samples, args.batch, args.size, args.seed, args.device)
        row(f"prior {source}", batches, grid)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
