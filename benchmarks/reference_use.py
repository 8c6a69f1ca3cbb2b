"""Does a model use its references? Output change with own / no / a stranger's references, and E_p's spread.

    python benchmarks/reference_use.py --models checkpoints/psp-gan-128 runs/psp-256-r3/chunk2/psp-256-export

On the first --samples test faces of people with other photos (severe degradation, K = 3, their own references),
each model restores the face three times: with its own references, with none, and with the next face's references
(another person). It prints the mean absolute output difference own - none and own - stranger (in [-1, 1] units),
and, for the reference encoder E_p, the spread of its features across people relative to their magnitude at
each scale (std over people / mean |value|). A model that reads who the references show has own - stranger well
above 0; one whose E_p collapsed has a spread near 0 at the coarse scales; one whose fusion ignores a healthy E_p
has a normal spread and own - stranger near 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psp_hub.data.config import DataConfig
from psp_hub.data.evaluation import build_eval_dataset
from psp_hub.models import PSPGAN


def test_batch(data: str, size: int, samples: int) -> dict:
    """The first `samples` sharp test faces with K = 3 own references, severely degraded."""
    cfg = DataConfig(path=data, out_size=size, max_references=3)
    ds = build_eval_dataset(
        cfg, "test", degradation="severe", num_references=3, only_with_references=True, max_samples=samples
    )
    return default_collate([ds[i] for i in range(len(ds))])


def spread(features: torch.Tensor) -> float:
    """Std across the batch (people) over mean magnitude: 0 when every person gives the same features."""
    return round((features.std(0).mean() / (features.abs().mean() + 1e-8)).item(), 3)


@torch.no_grad()
def reference_use(model: PSPGAN, batch: dict) -> dict:
    """Output differences own - none and own - stranger, and E_p's spread by scale."""
    lq, refs, mask = batch["lq"], batch["refs"], batch["ref_mask"]
    own = model(lq, refs, mask).image
    none = model(lq).image
    stranger = model(lq, refs.roll(1, 0), mask.roll(1, 0)).image
    feats = model.reference_features(refs[:, 0])
    return {
        "own_minus_none": round((own - none).abs().mean().item(), 5),
        "own_minus_stranger": round((own - stranger).abs().mean().item(), 5),
        "ref_encoder_spread": {int(r): spread(f) for r, f in sorted(feats.items())},
    }


def model_and_face_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of the scripts that run models on `test_batch`'s faces (this one and synthesis_levels)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="Hub ids or folders")
    parser.add_argument("--data", default="data/sharp256")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="the size the test faces are loaded at")
    return parser


def main() -> None:
    args = model_and_face_arguments(__doc__).parse_args()
    torch.manual_seed(0)
    batch = test_batch(args.data, args.size, args.samples)
    for name in args.models:
        model = PSPGAN.from_pretrained(name).eval()
        print(json.dumps({"model": name, "faces": int(batch["lq"].shape[0]), **reference_use(model, batch)}))


if __name__ == "__main__":
    main()
