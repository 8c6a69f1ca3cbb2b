"""The whole split decoded once into a uint8 tensor, and training batches drawn, augmented and degraded from it.

When the faces fit (30k faces at 256 px take 5.9 GB; an H200 has 141 GB), this replaces the streaming DataLoader:
no decode per sample, no worker processes, no host-to-device copy of every batch, and eq. (10) runs batched on the
GPU (gpu_degradation.py). Each batch: faces drawn with the older share of the phase (with replacement), flips,
K references per sample (other photos of the person, or augmented stand-ins for one-photo people, as
`sample.make_sample`), the degradation, and the eye/mouth boxes. Deterministic for (seed, phase, process,
start_sample), but not the same draws as the streaming loader.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .components import boxes_both_ways, flip_landmarks
from .config import DataConfig
from .images import decode_rgb, resize_square, scale_points
from .references import open_parquet
from .sources import data_files

COLUMNS = ["id", "image", "landmarks", "reference_ids", "is_older"]


@dataclass
class ResidentFaces:
    """Decoded faces of one split and what batches need of each."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    landmarks: torch.Tensor  # (N, 2, 5, 2) float32 at S: as stored [:, 0], horizontally flipped [:, 1]
    boxes: torch.Tensor  # (N, 2, 3, 4) float32 eye/mouth boxes, same two orientations
    is_older: torch.Tensor  # (N,) bool
    refs: torch.Tensor  # (N, R) int64: rows of the person's other photos here, -1 padded
    lists_refs: torch.Tensor  # (N,) bool: the row names other photos at all (else: augmented stand-ins)

    def to(self, device) -> ResidentFaces:
        return ResidentFaces(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def _read_rows(cfg: DataConfig) -> dict[str, list]:
    """The split's rows (images still encoded), in shard order, at most resident_max_rows of them."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    files = data_files(cfg.path, "default", cfg.split, cfg.revision)
    if not files:
        raise FileNotFoundError(f"no {cfg.split!r} shards in {cfg.path}")
    limit = cfg.resident_max_rows or None
    for url in files:
        for batch in open_parquet(url).iter_batches(columns=COLUMNS, batch_size=1024):
            for c in COLUMNS:
                cols[c] += batch.column(c).to_pylist()
            if limit and len(cols["id"]) >= limit:
                return {c: v[:limit] for c, v in cols.items()}
    return cols


def _decode(images: list[dict], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 faces at `size` and each one's stored side, decoded on threads (OpenCV frees the GIL)."""

    def one(image: dict) -> tuple[np.ndarray, int]:
        img = decode_rgb(image["bytes"])
        return resize_square(img, size), img.shape[0]

    with ThreadPoolExecutor() as pool:
        done = list(pool.map(one, images, chunksize=64))
    return np.stack([d[0] for d in done]), np.array([d[1] for d in done])


def _reference_table(ids: list[str], reference_ids: list[list[str] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, R) rows of each row's references that are present here (-1 padded), and whether it lists any."""
    where = {row_id: i for i, row_id in enumerate(ids)}
    rows = [[where[r] for r in (refs or []) if r in where and r != own] for own, refs in zip(ids, reference_ids)]
    table = torch.full((len(ids), max(1, max(map(len, rows)))), -1, dtype=torch.int64)
    for i, r in enumerate(rows):
        table[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return table, torch.tensor([bool(refs) for refs in reference_ids])


def load_faces(cfg: DataConfig) -> ResidentFaces:
    """Decode the split of `cfg.path` at `cfg.out_size` (CPU tensors)."""
    rows = _read_rows(cfg)
    size = cfg.out_size
    faces, stored = _decode(rows["image"], size)
    lm = np.stack(
        [scale_points(np.asarray(p, dtype=np.float32), int(s), size) for p, s in zip(rows["landmarks"], stored)]
    )
    both = np.stack([lm, flip_landmarks(lm, size)], axis=1)
    refs, lists_refs = _reference_table(rows["id"], rows["reference_ids"])
    return ResidentFaces(
        images=torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous(),
        landmarks=torch.from_numpy(both),
        boxes=torch.from_numpy(boxes_both_ways(lm, size, cfg.eye_box_iod, cfg.mouth_box_width)),
        is_older=torch.tensor([bool(v) for v in rows["is_older"]]),
        refs=refs,
        lists_refs=lists_refs,
    )


_CACHE: dict[tuple, ResidentFaces] = {}


def resident_faces(cfg: DataConfig, device) -> ResidentFaces:
    """`load_faces` once per process and (path, split, size, rows, device): a phase change reuses it."""
    key = (cfg.path, cfg.split, cfg.revision, cfg.out_size, cfg.resident_max_rows, str(device))
    if key not in _CACHE:
        _CACHE[key] = load_faces(cfg).to(device)
    return _CACHE[key]
