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

from psp_hub.common.geometry import flip_landmarks

from .components import boxes_both_ways
from .config import DataConfig
from .images import decode_rgb, resize_square, scale_points
from .mixing import native_sizes
from .references import open_parquet
from .sources import data_files

COLUMNS = ["id", "image", "landmarks", "reference_ids", "is_older"]
OPTIONAL_COLUMNS = ["sharp_px"]  # the 128 px corpus predates the measure: its faces count at their stored size


@dataclass
class ResidentFaces:
    """Decoded faces of one split and what batches need of each."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    landmarks: torch.Tensor  # (N, 2, 5, 2) float32 at S: as stored [:, 0], horizontally flipped [:, 1]
    boxes: torch.Tensor  # (N, 2, 3, 4) float32 eye/mouth boxes, same two orientations
    is_older: torch.Tensor  # (N,) bool
    refs: torch.Tensor  # (N, R) int64: rows of the person's other photos here, -1 padded
    lists_refs: torch.Tensor  # (N,) bool: the row names other photos at all (else: augmented stand-ins)
    native: torch.Tensor  # (N,) int64: the size its losses compare at (data/mixing.py; S where the rule is off)
    from_extra: torch.Tensor  # (N,) bool: the row comes from DataConfig.extra_path

    def to(self, device) -> ResidentFaces:
        return ResidentFaces(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def _read_rows(cfg: DataConfig) -> dict[str, list]:
    """The split's rows (images still encoded), in shard order, at most resident_max_rows of them."""
    cols: dict[str, list] = {c: [] for c in COLUMNS + OPTIONAL_COLUMNS}
    files = data_files(cfg.path, "default", cfg.split, cfg.revision)
    if not files:
        raise FileNotFoundError(f"no {cfg.split!r} shards in {cfg.path}")
    limit = cfg.resident_max_rows or None
    for url in files:
        shard = open_parquet(url)
        present = [c for c in OPTIONAL_COLUMNS if c in shard.schema_arrow.names]
        for batch in shard.iter_batches(columns=COLUMNS + present, batch_size=1024):
            for c in COLUMNS + OPTIONAL_COLUMNS:
                cols[c] += batch.column(c).to_pylist() if c in COLUMNS + present else [None] * batch.num_rows
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


def load_faces(cfg: DataConfig, from_extra: bool = False) -> ResidentFaces:
    """Decode the split of `cfg.path` at `cfg.out_size` (CPU tensors), each face's native size by the rule."""
    rows = _read_rows(cfg)
    size = cfg.out_size
    faces, stored = _decode(rows["image"], size)
    lm = np.stack(
        [scale_points(np.asarray(p, dtype=np.float32), int(s), size) for p, s in zip(rows["landmarks"], stored)]
    )
    both = np.stack([lm, flip_landmarks(lm, size)], axis=1)
    refs, lists_refs = _reference_table(rows["id"], rows["reference_ids"])
    sharp = np.array([np.nan if v is None else v for v in rows["sharp_px"]], dtype=np.float64)
    native = native_sizes(sharp, stored, size, cfg.sharp_threshold)
    return ResidentFaces(
        images=torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous(),
        landmarks=torch.from_numpy(both),
        boxes=torch.from_numpy(boxes_both_ways(lm, size, cfg.eye_box_iod, cfg.mouth_box_width)),
        is_older=torch.tensor([bool(v) for v in rows["is_older"]]),
        refs=refs,
        lists_refs=lists_refs,
        native=torch.from_numpy(native),
        from_extra=torch.full((len(native),), from_extra),
    )


def concat_faces(a: ResidentFaces, b: ResidentFaces) -> ResidentFaces:
    """Both sets as one: b's rows follow a's, its reference rows shifted to match (references stay within a set)."""
    width = max(a.refs.shape[1], b.refs.shape[1])

    def refs(f: ResidentFaces, offset: int) -> torch.Tensor:
        table = torch.where(f.refs >= 0, f.refs + offset, f.refs)
        return torch.cat([table, table.new_full((len(table), width - table.shape[1]), -1)], dim=1)

    joined = {k: torch.cat([getattr(a, k), getattr(b, k)]) for k in a.__dataclass_fields__ if k != "refs"}
    return ResidentFaces(**joined, refs=torch.cat([refs(a, 0), refs(b, len(a.refs))]))


def load_mixed_faces(cfg: DataConfig) -> ResidentFaces:
    """The split of `cfg.path`, followed by that of `cfg.extra_path` when one is set (upsampled to out_size)."""
    faces = load_faces(cfg)
    if cfg.extra_path:
        faces = concat_faces(
            faces, load_faces(cfg.replace(path=cfg.extra_path, extra_path=None, extra_fraction=0.0), from_extra=True)
        )
    return faces


_CACHE: dict[tuple, ResidentFaces] = {}


def resident_faces(cfg: DataConfig, device) -> ResidentFaces:
    """`load_mixed_faces` once per process and (sets, split, size, rule, rows, device): a phase change reuses it."""
    key = (cfg.path, cfg.extra_path, cfg.split, cfg.revision, cfg.out_size, cfg.sharp_threshold)
    key += (cfg.resident_max_rows, str(device))
    if key not in _CACHE:
        _CACHE[key] = load_mixed_faces(cfg).to(device)
    return _CACHE[key]
