"""Training batches from resident faces (resident.py), made on the training device in a few batched kernels.

Same keys, shapes and value ranges as the streaming loader's collated batches (docs/data.md), minus the strings,
plus `row`: each sample's row in the resident faces. Under the mixed-resolution rule (DataConfig.sharp_threshold)
also `native_px` (the size each sample's losses compare at) and `gan_real` / `gan_real_boxes` / `gan_real_row`: a
separate draw of faces native at out_size (flipped, grey as often as targets), the only reals the discriminators see.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .augment import augmented_views_batch
from .config import DataConfig
from .gpu_degradation import degrade_batch, sample_degradation_batch, to_gray_batch
from .resident import ResidentFaces, resident_faces
from .rng import stream_key
from .schedule import older_fraction_for


def _generator(cfg: DataConfig, phase: str, process_index: int, start_sample: int, device) -> torch.Generator:
    seq = np.random.SeedSequence([int(cfg.seed) & 0xFFFFFFFF, stream_key(phase), int(process_index), int(start_sample)])
    return torch.Generator(device=device).manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))


class ResidentBatches:
    """Endless batches for one process and phase; `start_sample` only seeds them (a resumed run gets fresh draws).

    `batch()` is one draw of `batch_size * cfg.batches_per_draw` samples; iterating hands it out `batch_size` at a time.
    """

    def __init__(
        self,
        cfg: DataConfig,
        batch_size: int,
        phase: str = "main",
        start_sample: int = 0,
        process_index: int = 0,
        device="cpu",
        targets_only: bool = False,
    ):
        self.cfg, self.batch_size, self.device = cfg, int(batch_size), torch.device(device)
        self.targets_only = targets_only
        self.faces: ResidentFaces = resident_faces(cfg, "cpu" if cfg.resident_on_cpu else self.device)
        older, extra = self.faces.is_older.cpu(), self.faces.from_extra.cpu()
        frac = older_fraction_for(cfg, phase)
        self.older_fraction = 0.0 if not older.any() else 1.0 if older.all() else frac
        self.mixed = cfg.sharp_threshold > 0
        store = self.faces.images.device
        # general faces of the main set, older faces of both sets, general faces of the extra set
        self.pools = [torch.nonzero(m)[:, 0].to(store) for m in (~older & ~extra, older, ~older & extra)]
        self.extra_fraction = cfg.extra_fraction if len(self.pools[2]) else 0.0
        self.sharp_pool = torch.nonzero(self.faces.native.cpu() == cfg.out_size)[:, 0].to(store)
        if self.mixed and not len(self.sharp_pool):
            raise ValueError(f"no face of {cfg.path} reaches sharp_threshold {cfg.sharp_threshold}: no GAN reals")
        self.gen = _generator(cfg, phase, process_index, start_sample, self.device)
        self.store_gen = (
            self.gen
            if self.faces.images.device.type == self.device.type
            else torch.Generator().manual_seed(
                int(torch.randint(0, 2**62, (1,), generator=self.gen, device=self.device).cpu())
            )
        )
        self.next_index = int(start_sample)
        self.draw_size = self.batch_size * cfg.batches_per_draw
        self.pending: list[dict] = []

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        if not self.pending:
            self.pending = split_batch(self.batch(), self.cfg.batches_per_draw)
        return self.pending.pop(0)

    def _uniform(self, pool: torch.Tensor) -> torch.Tensor:
        """`draw_size` rows drawn uniformly (with replacement) from `pool` (zeros when it is empty)."""
        b, g, dev = self.draw_size, self.store_gen, self.faces.images.device
        if not len(pool):
            return torch.zeros(b, dtype=torch.int64, device=dev)
        return pool[torch.randint(0, len(pool), (b,), generator=g, device=dev) % len(pool)]

    def _draw(self) -> torch.Tensor:
        """Row indices: Bernoulli(older share) per sample, else Bernoulli(extra share) between the general pools."""
        b, g, dev = self.draw_size, self.store_gen, self.faces.images.device
        if self.targets_only and self.mixed:  # the prior's faces are all reals of its discriminator
            return self._uniform(self.sharp_pool)
        general, older_rows = self._uniform(self.pools[0]), self._uniform(self.pools[1])
        older = torch.rand(b, generator=g, device=dev) < self.older_fraction
        idx = torch.where(older, older_rows, general)
        if self.extra_fraction > 0:  # drawn only then, so a run without an extra set keeps its exact draws
            extra = torch.rand(b, generator=g, device=dev) < self.extra_fraction
            idx = torch.where(~older & extra, self._uniform(self.pools[2]), idx)
        return idx

    def _gan_reals(self, grey_prob: float) -> dict:
        """A batch of faces native at out_size, flipped at random, grey at the targets' rate: the GAN's reals."""
        cfg, f, g, dev = self.cfg, self.faces, self.gen, self.device
        rows = self._uniform(self.sharp_pool)
        b, at = len(rows), torch.arange(len(rows), device=dev)
        flip = (torch.rand(b, generator=g, device=dev) < cfg.hflip_prob).long()
        real = f.images[rows].to(dev, non_blocking=True).float() / 255
        real = torch.where(flip[:, None, None, None] > 0, real.flip(-1), real)
        grey = (torch.rand(b, generator=g, device=dev) < grey_prob) & cfg.degradation.gt_gray
        boxes = f.boxes[rows].to(dev)[at, flip]
        return {"gan_real": _grey_where(grey, real) * 2 - 1, "gan_real_boxes": boxes, "gan_real_row": rows.to(dev)}

    def _references(self, idx: torch.Tensor, hr: torch.Tensor) -> dict:
        """K per sample: other photos of the person (in random order, each flipped at random), else augmented views."""
        cfg, f, g, dev = self.cfg, self.faces, self.gen, self.device
        b, kmax = idx.shape[0], cfg.max_references
        if kmax == 0:
            empty = torch.zeros(b, 0, dtype=torch.bool, device=dev)
            return {"refs": hr.new_zeros((b, 0, *hr.shape[1:])), "ref_mask": empty, "ref_is_augmented": empty}
        k = torch.randint(cfg.min_references, cfg.max_references + 1, (b, 1), generator=g, device=dev)
        cand = f.refs[idx].to(dev)
        keys = torch.rand(cand.shape, generator=g, device=dev).masked_fill(cand < 0, 2.0)
        order = keys.argsort(dim=1)[:, :kmax]
        chosen = torch.gather(cand, 1, order)
        if chosen.shape[1] < kmax:
            chosen = torch.cat([chosen, chosen.new_full((b, kmax - chosen.shape[1]), -1)], dim=1)
        slot = torch.arange(kmax, device=dev)[None]
        real = (chosen >= 0) & (slot < k)
        lists = f.lists_refs[idx].to(dev)[:, None]
        aug = (slot < k) & ~lists & (cfg.single_photo_refs == "augment")
        views = f.images[chosen.clamp_min(0).to(f.images.device)].to(dev).float() / 255  # (B, K, 3, S, S)
        flip = torch.rand(b, kmax, generator=g, device=dev) < cfg.ref_hflip_prob
        views = torch.where(flip[..., None, None, None], views.flip(-1), views)
        stand_in = augmented_views_batch(hr.repeat_interleave(kmax, dim=0), g).view_as(views)
        views = torch.where(aug[..., None, None, None], stand_in, views)
        refs = torch.where((real | aug)[..., None, None, None], views * 2 - 1, torch.zeros((), device=dev))
        return {"refs": refs, "ref_mask": real | aug, "ref_is_augmented": aug}

    def batch(self) -> dict:
        cfg, f, g, dev = self.cfg, self.faces, self.gen, self.device
        idx = self._draw()
        b, size = idx.shape[0], cfg.out_size
        flip = (torch.rand(b, generator=g, device=dev) < cfg.hflip_prob).long()
        hr = f.images[idx].to(dev, non_blocking=True).float() / 255
        hr = torch.where(flip[:, None, None, None] > 0, hr.flip(-1), hr)
        at, idx_dev = torch.arange(b, device=dev), idx.to(dev)
        batch = {
            "is_older": f.is_older[idx].to(dev),
            "flipped": flip.bool(),
            "index": self.next_index + at,
            "row": idx_dev,
        }
        self.next_index += b
        if self.targets_only:  # the prior stage: no input, no references; grey targets as often as with them
            grey = torch.rand(b, generator=g, device=dev) < cfg.degradation.gray_prob
            return {"target": _grey_where(grey & cfg.degradation.gt_gray, hr) * 2 - 1, **batch}
        params = sample_degradation_batch(cfg.degradation, b, size, g)
        lq = degrade_batch(hr, params, cfg.degradation, g)
        target = _grey_where((params["gray"] > 0) & cfg.degradation.gt_gray, hr)
        if self.mixed:
            batch |= {"native_px": f.native[idx].to(dev), **self._gan_reals(cfg.degradation.gray_prob)}
        return {
            "target": target * 2 - 1,
            "lq": lq * 2 - 1,
            **self._references(idx_dev, hr),
            "boxes": f.boxes[idx].to(dev)[at, flip],
            "landmarks": f.landmarks[idx].to(dev)[at, flip],
            "degradation": params,
            **batch,
        }


def split_batch(batch: dict, parts: int) -> list[dict]:
    """`parts` equal batches out of one: every tensor (nested dicts too) split along its first, the sample, axis."""
    if parts == 1:
        return [batch]  # one step per draw (the default): no views to make
    out: list[dict] = [{} for _ in range(parts)]
    for key, value in batch.items():
        pieces = split_batch(value, parts) if isinstance(value, dict) else torch.tensor_split(value, parts)
        for piece, into in zip(pieces, out):
            into[key] = piece
    return out


def _grey_where(mask: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), to_gray_batch(img), img)


def build_train_batches(
    cfg: DataConfig,
    *,
    batch_size: int,
    phase: str = "main",
    start_sample: int = 0,
    process_index: int = 0,
    num_processes: int = 1,
    device="cpu",
    targets_only: bool = False,
) -> Iterator[dict]:
    """Endless training batches with the loader `cfg.loader` names: the streaming DataLoader (CPU batches) or
    resident faces (batches already on `device`; `targets_only` skips inputs and references, for the prior)."""
    if cfg.loader == "resident":
        return ResidentBatches(cfg, batch_size, phase, start_sample, process_index, device, targets_only)
    from .stream import build_train_dataloader

    return iter(
        build_train_dataloader(
            cfg,
            batch_size=batch_size,
            phase=phase,
            start_sample=start_sample,
            process_index=process_index,
            num_processes=num_processes,
        )
    )
