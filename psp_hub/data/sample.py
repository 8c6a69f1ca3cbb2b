"""Turn one dataset row into a training sample: target, references, degraded input, boxes, landmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from psp_hub.common.geometry import component_boxes, flip_landmarks
from psp_hub.common.images import image_to_tensor

from .augment import augmented_view
from .config import DataConfig, DegradationConfig
from .degradation import degrade, sample_degradation, to_gray
from .images import decode_rgb, resize_square, scale_points
from .references import ReferenceStore
from .rng import sample_generators


@dataclass(frozen=True)
class SampleOptions:
    """What varies between training and evaluation samples."""

    degradation: DegradationConfig
    hflip_prob: float
    ref_hflip_prob: float
    min_references: int
    max_references: int
    single_photo_refs: str  # "augment" or "none"
    pad_references: int  # Kmax: the refs tensor always has this many slots

    @classmethod
    def for_training(cls, cfg: DataConfig) -> SampleOptions:
        """Options of the training stream, from the data config."""
        return cls(
            cfg.degradation,
            cfg.hflip_prob,
            cfg.ref_hflip_prob,
            cfg.min_references,
            cfg.max_references,
            cfg.single_photo_refs,
            cfg.max_references,
        )


def choose_references(row: dict, k: int, rng: np.random.Generator, available=None) -> list[str]:
    """Up to k ids of this person's other photos, drawn without replacement (never the target itself).

    `available(id)` filters out photos missing from the shards at hand (e.g. a partial download).
    """
    others = [r for r in (row.get("reference_ids") or []) if r != row["id"] and (available is None or available(r))]
    if k <= 0 or not others:
        return []
    pick = rng.choice(len(others), size=min(k, len(others)), replace=False)
    return [others[int(i)] for i in pick]


def _references(row: dict, hr: np.ndarray, opts: SampleOptions, store: ReferenceStore, g_refs, g_aug):
    """K drawn per sample: other photos of the person, else (optionally) augmented views of this one.

    Returns the (Kmax, 3, S, S) tensor, its mask, which slots are augmented views, and the reference ids.
    """
    size, kmax = hr.shape[0], opts.pad_references
    k = int(g_refs.integers(opts.min_references, opts.max_references + 1))
    ref_ids = choose_references(row, k, g_refs, store.__contains__)
    ref_mask = np.zeros(kmax, dtype=bool)
    ref_aug = np.zeros(kmax, dtype=bool)
    views: list[np.ndarray] = []
    if ref_ids:
        for rid in ref_ids:
            ref = resize_square(decode_rgb(store.get(rid)), size)
            if g_refs.random() < opts.ref_hflip_prob:
                ref = ref[:, ::-1]
            views.append(ref)
    elif opts.single_photo_refs == "augment" and not row.get("reference_ids"):
        views = [augmented_view(hr, g_aug) for _ in range(k)]
        ref_aug[: len(views)] = True
    refs_t = torch.zeros((kmax, 3, size, size), dtype=torch.float32)
    for j, v in enumerate(views):
        refs_t[j] = image_to_tensor(v)
        ref_mask[j] = True
    return refs_t, ref_mask, ref_aug, ref_ids


def make_sample(
    row: dict,
    index: int,
    seed: int,
    stream: str,
    part: int,
    cfg: DataConfig,
    opts: SampleOptions,
    store: ReferenceStore,
) -> dict:
    """The sample at global position `index` of stream `stream`; all randomness comes from (seed, stream, part, index)."""
    g_geom, g_refs, g_deg, g_aug = sample_generators(seed, stream, part, index)
    size = cfg.out_size
    kmax = opts.pad_references
    img = decode_rgb(row["image"]["bytes"])
    src_size = img.shape[0]
    hr = resize_square(img, size)
    lm = scale_points(np.asarray(row["landmarks"], dtype=np.float32), src_size, size)
    flip = bool(g_geom.random() < opts.hflip_prob)
    if flip:
        hr = np.ascontiguousarray(hr[:, ::-1])
        lm = flip_landmarks(lm, size)

    refs_t, ref_mask, ref_aug, ref_ids = _references(row, hr, opts, store, g_refs, g_aug)

    params = sample_degradation(opts.degradation, g_deg, size)
    lq = degrade(hr, params, g_deg)
    target = hr
    if params.gray and opts.degradation.gt_gray:
        target = to_gray(hr)

    return {
        "target": image_to_tensor(target),
        "lq": image_to_tensor(lq),
        "refs": refs_t,
        "ref_mask": torch.from_numpy(ref_mask),
        "ref_is_augmented": torch.from_numpy(ref_aug),
        "boxes": torch.from_numpy(component_boxes(lm, size, cfg.eye_box_iod, cfg.mouth_box_width)),
        "landmarks": torch.from_numpy(np.ascontiguousarray(lm, dtype=np.float32)),
        "is_older": torch.tensor(bool(row.get("is_older", False))),
        "flipped": torch.tensor(flip),
        "index": torch.tensor(int(index), dtype=torch.int64),
        "degradation": {k: torch.tensor(v, dtype=torch.float32) for k, v in params.as_floats().items()},
        "id": row["id"],
        "identity": row["identity"],
        "ref_ids": ref_ids + [""] * (kmax - len(ref_ids)),
    }
