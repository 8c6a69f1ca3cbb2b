"""Flag photos without identity labels that show a held-out (validation / test) person of a built dataset.

CelebA-HQ photos carry no identity, and CelebA-HQ is drawn from CelebA, whose test people are held out: an
ArcFace (shared MobileFaceNet) match to a held-out person's photos would put that person into training.
    python train/data/check_identity_leaks.py data/sharp256 --sources celebahq
Prints the same-person / other-person similarity of labelled people (to choose the threshold) and every
suspect above it; add suspects to the manifest's `exclude` of that source.
"""

from __future__ import annotations

import argparse
import glob
import io
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image


def load_rows(dataset: str) -> list[dict]:
    """id, identity, source, split and image bytes of every row."""
    rows = []
    for path in sorted(glob.glob(f"{dataset}/data/*/*.parquet")):
        split = path.split("/")[-2]
        for r in pq.read_table(path, columns=["id", "identity", "source", "origin", "image"]).to_pylist():
            rows.append({**r, "split": split, "image": r["image"]["bytes"]})
    return rows


@torch.inference_mode()
def embed(rows: list[dict], batch: int = 64) -> np.ndarray:
    """(N, 192) L2-normalised ArcFace embeddings of the aligned faces."""
    from psp_hub.identity.encoder import IdentityEncoder

    enc = IdentityEncoder.from_onnx()
    out = []
    for i in range(0, len(rows), batch):
        ims = [
            np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB"), dtype=np.float32) for r in rows[i : i + batch]
        ]
        x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2) / 127.5 - 1.0
        out.append(enc(x).numpy())
    return np.concatenate(out)


def main() -> None:
    """CLI entry."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--sources", default="celebahq", help="comma-separated unlabelled sources to check")
    p.add_argument(
        "--far", type=float, default=0.001, help="false-match rate among different people that sets the threshold"
    )
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = load_rows(a.dataset)
    check = [r for r in rows if r["source"] in a.sources.split(",")]
    held = [r for r in rows if r["split"] != "train"]
    emb = embed(check + held)
    e_check, e_held = emb[: len(check)], emb[len(check) :]
    people = defaultdict(list)
    for k, r in enumerate(held):
        people[r["identity"]].append(k)
    sim = e_held @ e_held.T
    ident = np.array([r["identity"] for r in held])
    same = sim[(ident[:, None] == ident[None, :]) & ~np.eye(len(held), dtype=bool)]
    other = sim[ident[:, None] != ident[None, :]]
    thr = float(np.quantile(other, 1 - a.far))
    print(
        f"held-out faces {len(held)} of {len(people)} people; same-person cos median {np.median(same):.3f}, "
        f"other-person p50 {np.median(other):.3f} p99.9 {thr:.3f}; same pairs above threshold: {(same > thr).mean():.1%}"
    )
    best = e_check @ e_held.T
    hits = 0
    for k, r in enumerate(check):
        j = int(best[k].argmax())
        person = held[j]["identity"]
        mean = float(best[k, people[person]].mean())
        if mean > thr:
            hits += 1
            print(
                f"suspect {r['id']} {r['origin']} ~ {person} ({held[j]['split']}): mean cos {mean:.3f}, best {best[k, j]:.3f}"
            )
    print(f"{hits} of {len(check)} checked photos match a held-out person above {thr:.3f}")


if __name__ == "__main__":
    main()
