"""Evaluate a PSP-GAN model on held-out identities: PSNR, SSIM, LPIPS, dlib and ArcFace identity, face detail.

    python -m psp_hub.evaluate --model checkpoints/psp-gan-128 --data data/psp-faces128 --out outputs/eval
    python -m psp_hub.evaluate --model <256 px model> --data data/sharp256 --compare-model checkpoints/psp-gan-128

For each degradation level (moderate x4, severe x8) and each reference count K (0, 1, 3) it restores the same
test faces (people with at least one other photo, so K is comparable), and reports every metric for all,
older and younger faces, against bicubic. dlib's ResNet was not used in training, so its distance is the unbiased
identity score. The evaluation size is the model's unless `--size` says otherwise; a model (or `--compare-model`)
of another size gets the same inputs resized to its own size and its outputs are resized bicubically to the
evaluation size. Above 128 px only targets sharp at that size count (`sharp_px` >= 0.8 x size by default).
Writes results.json, results.md (the table for the model card) and grid.png (input, bicubic, [compare model],
K=0, K=max, target, [other person]).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from .config import EvalConfig
from .report import markdown_table, write_card
from .run import evaluate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = EvalConfig()
    p.add_argument("--model", default=d.model, help="Hub id or folder")
    p.add_argument("--data", default=d.data, help="dataset folder or Hub id (built by train/build_dataset.py)")
    p.add_argument("--split", default=d.split)
    p.add_argument("--levels", nargs="+", default=list(d.levels))
    p.add_argument("--refs", nargs="+", type=int, default=list(d.refs))
    p.add_argument("--max-samples", type=int, default=d.max_samples)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--device", default=d.device)
    p.add_argument("--out", default=d.out)
    p.add_argument(
        "--other-person-refs",
        action="store_true",
        help="also restore with another test person's references (a control: personal detail should be lost)",
    )
    p.add_argument(
        "--card",
        action="store_true",
        help="write the table and grid into the model folder's model card (README.md, eval_grid.webp)",
    )
    p.add_argument("--summary", default="", help="with --card: the training summary line of the card")
    p.add_argument(
        "--training-data",
        default=None,
        help="with --card: a markdown file for the card's 'Training data and licences' (default: the 128 px corpus)",
    )
    p.add_argument("--datasets", nargs="+", default=None, help="with --card: the card's dataset names")
    p.add_argument(
        "--results",
        default=None,
        help="with --card: write the card from this earlier run's results.json (its grid.png beside it) instead of "
        "evaluating again",
    )
    p.add_argument("--size", type=int, default=None, help="evaluation size (default: the model's output size)")
    p.add_argument(
        "--compare-model",
        default=None,
        help="a second model (e.g. checkpoints/psp-gan-128) on the same faces, outputs resized to the evaluation size",
    )
    p.add_argument(
        "--min-sharp-px",
        type=int,
        default=None,
        help="targets need sharp_px >= this (default: 0.8 x the scored size above 128 px, no filter at 128)",
    )
    p.add_argument(
        "--score-size",
        type=int,
        default=None,
        help="score outputs and targets area-downsampled to this size, e.g. 128 for the 128 px corpus (and its older "
        "faces) at a 256 px evaluation (default: the evaluation size)",
    )
    return p


def _config(a: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        model=a.model,
        data=a.data,
        split=a.split,
        levels=tuple(a.levels),
        refs=tuple(a.refs),
        max_samples=a.max_samples,
        batch_size=a.batch_size,
        device=a.device,
        out=a.out,
        other_person_refs=a.other_person_refs,
        size=a.size,
        compare_model=a.compare_model,
        min_sharp_px=a.min_sharp_px,
        score_size=a.score_size,
    )


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    cfg = _config(a)
    if a.results:  # the card from a finished run: its folder holds the grid
        cfg = dataclasses.replace(cfg, out=str(Path(a.results).parent))
        results = json.loads(Path(a.results).read_text())
    else:
        results = evaluate(cfg)
        print(markdown_table(results))
        print(f"wrote {cfg.out}/results.json, results.md, grid.png in {results['seconds']} s")
    if a.card:
        data = Path(a.training_data).read_text(encoding="utf-8").strip() if a.training_data else ""
        print(f"model card written to {write_card(cfg, results, a.summary, data, a.datasets)}")
    return 0
