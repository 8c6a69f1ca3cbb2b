"""Build the PSP-GAN training dataset (Hub layout: parquet shards + card) from aligned faces or plain photos.

Example (the shared corpus -> data/psp-faces128):
    python train/build_dataset.py --input ../shared/data/faces128 --output data/psp-faces128 --seed 0
Several photo folders at once (the sharp 256 px set, see docs/data.md):
    python train/build_dataset.py --sources train/data/sharp256.yaml --output data/sharp256 --size 256 --image-format webp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from psp_hub.common.paths import faces_dir
from psp_hub.data.build import BuildConfig, build_dataset, load_manifest, push_to_hub, remove_build_state
from psp_hub.data.config import DEFAULT_DATASET_DIR


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see docs/data.md)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sources",
        type=Path,
        default=None,
        help="YAML manifest of several photo folders (psp_hub/data/build/manifest.py); replaces --input",
    )
    p.add_argument("--only", default=None, help="with --sources: build only these sources (comma-separated names)")
    p.add_argument(
        "--input",
        type=Path,
        default=None,
        help="aligned corpus with metadata.csv, or a folder of photos (default: the shared faces128)",
    )
    p.add_argument(
        "--output", type=Path, default=DEFAULT_DATASET_DIR, help="dataset folder to write (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=float, default=0.9, help="fraction of images (whole people) in train")
    p.add_argument("--validation", type=float, default=0.05)
    p.add_argument("--test", type=float, default=0.05)
    p.add_argument("--older-age", type=int, default=50, help="ages >= this form the older group")
    p.add_argument("--mode", choices=["auto", "aligned", "photos"], default="auto")
    p.add_argument("--rows-per-shard", type=int, default=2048)
    p.add_argument("--row-group-size", type=int, default=128)
    p.add_argument("--min-native-px", type=int, default=64, help="skip faces whose crop spans fewer source pixels")
    p.add_argument("--size", type=int, default=512, help="photo mode: aligned crop size")
    p.add_argument("--image-format", choices=["png", "webp"], default="png", help="photo mode: stored format")
    p.add_argument("--source-name", default="photos", help="photo mode: the `source` column")
    p.add_argument("--license", default=None, help="photo mode: licence of the photos (for the card)")
    p.add_argument("--pretty-name", default=None)
    p.add_argument("--workers", type=int, default=0, help="processes for checking inputs (0 = all cores)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="upload the result to this Hub dataset repo")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create a private repo")
    p.add_argument("--clean-cache", action="store_true", help="delete the resumable-build cache after success")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build (or resume), print the report, optionally push."""
    a = parse_args(argv)
    sources = None
    if a.sources:
        root, sources = load_manifest(a.sources)
        if a.only:
            names = a.only.split(",")
            unknown = sorted(set(names) - {s.name for s in sources})
            if unknown:
                raise SystemExit(f"--only: no source named {unknown} in {a.sources}")
            sources = [s for s in sources if s.name in names]
    cfg = BuildConfig(
        input=root if sources else (a.input or faces_dir()),
        output=a.output,
        seed=a.seed,
        split_fractions=(a.train, a.validation, a.test),
        older_age=a.older_age,
        mode=a.mode,
        rows_per_shard=a.rows_per_shard,
        row_group_size=a.row_group_size,
        min_native_px=a.min_native_px,
        size=a.size,
        image_format=a.image_format,
        source_name=a.source_name,
        license=a.license,
        workers=a.workers,
        pretty_name=a.pretty_name,
    )
    report = build_dataset(
        cfg, progress=None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True)), sources=sources
    )
    keys = (
        "mode",
        "inputs",
        "kept",
        "rows",
        "people",
        "skipped",
        "unlisted_files",
        "shards_written",
        "shards_reused",
        "seconds",
        "per_source",
        "sharp_pairs",
    )
    summary = {k: report[k] for k in keys if k in report}
    print(json.dumps(summary, indent=2))
    if a.clean_cache:
        remove_build_state(cfg.output)
    if a.push_to_hub:
        print(push_to_hub(Path(cfg.output), a.push_to_hub, private=a.private))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
