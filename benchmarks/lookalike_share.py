"""Reference selection against a lookalike: the weight a model gives a person's own reference beside the most
similar-looking other person's, on held-out faces.

    python benchmarks/lookalike_share.py --models checkpoints/psp-gan-256 runs/psp-256-r9/chunk3/psp-256-export \
        --samples 48

`tests/test_contributions.py` pins this on six 128 px fixture people; here it runs on `--samples` sharp test faces of
people with other photos (severe degradation, reference_use.py's faces). Each face gets two references: its own first
reference and, among the other people's first references in the batch, the one whose ArcFace embedding is closest to
the face's target. It prints, per model, the own reference's mean share, how many faces give it more than half, and
the lowest share.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_use import model_and_face_arguments, test_batch  # a sibling script: the same faces and options

from psp_hub.common import tensor_to_image
from psp_hub.models import PSPGAN
from psp_hub.pipeline import IdentityScorer


def lookalike_refs(batch: dict, scorer: IdentityScorer) -> torch.Tensor:
    """(N, 2, 3, H, W): each face's own first reference, then the other person's reference that looks most like it."""
    own = batch["refs"][:, 0]
    sims = scorer.embed(list(tensor_to_image(batch["target"]))) @ scorer.embed(list(tensor_to_image(own))).T
    identities = np.asarray(batch["identity"])
    sims[identities[:, None] == identities[None, :]] = -np.inf  # never the same person
    return torch.stack([own, own[torch.from_numpy(sims.argmax(1))]], dim=1)


@torch.no_grad()
def own_shares(model: PSPGAN, lq: torch.Tensor, refs: torch.Tensor) -> np.ndarray:
    """The share the model's reference selection gives the first (own) reference, per face."""
    return model(lq, refs, return_contributions=True).contributions[:, 0].float().numpy()


def main() -> None:
    args = model_and_face_arguments(__doc__).parse_args()
    torch.manual_seed(0)
    batch = test_batch(args.data, args.size, args.samples)
    refs = lookalike_refs(batch, IdentityScorer())
    for name in args.models:
        shares = own_shares(PSPGAN.from_pretrained(name).eval(), batch["lq"], refs)
        summary = {
            "mean": round(float(shares.mean()), 3),
            "above_half": int((shares > 0.5).sum()),
            "min": round(float(shares.min()), 3),
        }
        print(json.dumps({"model": name, "faces": len(shares), **summary}))


if __name__ == "__main__":
    main()
