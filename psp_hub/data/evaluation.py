"""Deterministic, finite evaluation datasets (validation / test) with a fixed degradation per sample."""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import Dataset

from ..common.images import image_to_tensor
from .config import DataConfig, DegradationConfig
from .images import decode_rgb, resize_square
from .references import ReferenceStore
from .sample import SampleOptions, make_sample
from .sources import data_files, open_stream

META_COLUMNS = ("id", "identity", "is_older", "landmarks", "reference_ids", "size", "age")


class EvalDataset(Dataset):
    """Map-style dataset over one split in stored order; sample i is the same on every call, worker and run."""

    def __init__(self, cfg: DataConfig, split: str, rows: list[dict], store: ReferenceStore, options: SampleOptions):
        self.cfg, self.split, self.rows, self.store, self.options = cfg, split, rows, store, options

    def __len__(self) -> int:
        """Number of faces in the split (after filters)."""
        return len(self.rows)

    def __iter__(self):
        """Samples in stored order."""
        return (self[i] for i in range(len(self)))

    def face(self, i: int) -> torch.Tensor:
        """Face i alone, as a sample's target would be before degradation: (3, S, S) in [-1, 1] at cfg.out_size."""
        return image_to_tensor(resize_square(decode_rgb(self.store.get(self.rows[i]["id"])), self.cfg.out_size))

    def face_batches(self, indices, batch_size: int):
        """The faces at `indices`, as (B, 3, S, S) batches (no degradation, no references: only the pixels)."""
        for start in range(0, len(indices), batch_size):
            yield torch.stack([self.face(int(i)) for i in indices[start : start + batch_size]])

    def __getitem__(self, i: int) -> dict:
        """Sample i, keyed by (seed, split, i): identical on every call."""
        if not 0 <= i < len(self.rows):
            raise IndexError(i)
        meta = self.rows[i]
        row = {**meta, "image": {"bytes": self.store.get(meta["id"])}}
        return make_sample(row, i, self.cfg.seed, f"eval-{self.split}", 0, self.cfg, self.options, self.store)


def build_eval_dataset(
    cfg: DataConfig,
    split: str = "validation",
    *,
    degradation: DegradationConfig | str | None = None,
    num_references: int | None = None,
    augment_single: bool = False,
    only_with_references: bool = False,
    max_samples: int | None = None,
    min_sharp_px: int = 0,
) -> EvalDataset:
    """Validation / test samples with the training sample layout (batch them with `collate_samples`).

    `degradation`: a DegradationConfig or preset name ('moderate' x4, 'severe' x8; default: cfg.degradation, drawn
    once per sample from cfg.seed). `num_references`: exactly min(K, available) references per sample (default
    cfg.max_references). No flips. People with one photo get no references unless `augment_single`.
    `min_sharp_px`: keep only targets whose measured sharpness (the `sharp_px` column) reaches it; references
    are not filtered (any photo of the person may guide).
    """
    if isinstance(degradation, str):
        degradation = DegradationConfig.preset(degradation)
    k = cfg.max_references if num_references is None else int(num_references)
    cfg = dataclasses.replace(cfg, split=split)
    options = SampleOptions(
        degradation=degradation or cfg.degradation,
        hflip_prob=0.0,
        ref_hflip_prob=0.0,
        min_references=k,
        max_references=k,
        single_photo_refs="augment" if augment_single else "none",
        pad_references=max(cfg.max_references, k),
    )
    columns = META_COLUMNS + (("sharp_px",) if min_sharp_px > 0 else ())
    rows = list(open_stream(cfg.path, "default", split, cfg.revision, columns=columns))
    if min_sharp_px > 0:
        rows = [r for r in rows if (r["sharp_px"] or 0) >= min_sharp_px]
    if only_with_references:
        rows = [r for r in rows if r["reference_ids"]]
    if max_samples is not None:
        rows = rows[:max_samples]
    store = ReferenceStore(data_files(cfg.path, "default", split, cfg.revision), cfg.ref_cache_mb)
    return EvalDataset(cfg, split, rows, store, options)
