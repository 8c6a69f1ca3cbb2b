"""The training loader: one canonical sample sequence per (seed, phase, process), split among DataLoader workers.

Every worker walks the same sequence (cheap: rows it does not own are skipped in arrow, never decoded) and builds
only the samples of its own batches, in the order the DataLoader collects them (batch j from worker j mod W). So
batches equal those of a single-process run, worker count and scheduling never change a sample, and
`start_sample=n` reproduces an uninterrupted run from sample n on: the mix schedule says how many rows each group
stream gave before n, and those are skipped without decoding.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .config import DataConfig
from .mixing import MixSchedule
from .references import ReferenceStore
from .rng import stream_key
from .sample import SampleOptions, make_sample
from .schedule import older_fraction_for
from .schema import GROUPS
from .sources import RowCursor, available_groups, data_files, group_stream


def collate_samples(samples: list[dict]) -> dict:
    """Stack tensors (and the `degradation` dict of scalars) into batches; strings stay lists."""
    out: dict = {}
    for key, first in samples[0].items():
        values = [s[key] for s in samples]
        if isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, dict):
            out[key] = {k: torch.stack([v[k] for v in values]) for k in first}
        else:
            out[key] = values
    return out


def _exit_worker_now() -> None:
    """Leave a DataLoader worker without C++ static teardown, which can abort on arrow's scan threads.

    A worker of this endless stream only ends when the loader shuts down (torch has already cancelled its queue),
    so nothing is lost: close the readers, flush, and exit.
    """
    import os
    import sys

    from .references import _close_live_stores
    from .sources import _close_live_cursors

    _close_live_cursors()
    _close_live_stores()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _init_worker(_: int) -> None:
    """One thread per worker for OpenCV and torch (the parallelism is across workers); a clean exit at shutdown."""
    import atexit

    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    atexit.register(_exit_worker_now)


class TrainStream(IterableDataset):
    """Endless stream of training samples for one process, phase and starting position."""

    def __init__(
        self,
        cfg: DataConfig,
        batch_size: int,
        phase: str = "main",
        start_sample: int = 0,
        process_index: int = 0,
        num_processes: int = 1,
    ):
        super().__init__()
        if batch_size < 1 or start_sample < 0:
            raise ValueError("batch_size must be >= 1 and start_sample >= 0")
        self.cfg, self.batch_size, self.phase = cfg, int(batch_size), phase
        self.start_sample, self.process_index, self.num_processes = (
            int(start_sample),
            int(process_index),
            int(num_processes),
        )
        frac = older_fraction_for(cfg, phase)
        has_general, has_older = available_groups(cfg)
        if frac > 0 and not has_older:
            warnings.warn(
                f"split {cfg.split!r} of {cfg.path} has no older faces: streaming general faces only", stacklevel=2
            )
        use = (has_general and (frac < 1 or not has_older), has_older and frac > 0)
        if not any(use):
            raise FileNotFoundError(f"nothing to stream for split {cfg.split!r} of {cfg.path} (older_fraction={frac})")
        self.mix = MixSchedule(frac, cfg.seed, stream_key(phase), self.process_index, use)
        self.streams = {
            i: group_stream(cfg, g, phase, self.process_index, self.num_processes)
            for i, g in enumerate(GROUPS)
            if use[i]
        }
        self.store = ReferenceStore(data_files(cfg.path, "default", cfg.split, cfg.revision), cfg.ref_cache_mb)
        self.options = SampleOptions.for_training(cfg)

    def _walk(self, owns) -> Iterator[tuple[int, dict]]:
        """(index, row) for the indices `owns(index)` accepts, from start_sample on; other rows are skipped cheaply."""
        cursors = {i: RowCursor(ds) for i, ds in self.streams.items()}
        before = self.mix.counts_before(self.start_sample)
        for i, cur in cursors.items():
            cur.skip(before[i])
        index = self.start_sample
        try:
            while True:
                cur = cursors[self.mix.source(index)]
                if owns(index):
                    yield index, cur.take()
                else:
                    cur.skip(1)
                index += 1
        finally:
            for cur in cursors.values():
                cur.close()

    def rows(self) -> Iterator[tuple[int, dict]]:
        """All (index, row) of this process's sequence from start_sample on, undecoded (for checks and tests)."""
        return self._walk(lambda index: True)

    def __iter__(self) -> Iterator[dict]:
        """This worker's samples: the batches j with j mod num_workers == worker id."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        start, bs = self.start_sample, self.batch_size
        for index, row in self._walk(lambda i: ((i - start) // bs) % workers == worker):
            yield make_sample(
                row, index, self.cfg.seed, self.phase, self.process_index, self.cfg, self.options, self.store
            )


def build_train_dataloader(
    cfg: DataConfig,
    *,
    batch_size: int,
    phase: str = "main",
    start_sample: int = 0,
    process_index: int = 0,
    num_processes: int = 1,
) -> DataLoader:
    """Endless DataLoader of dict batches (keys in docs/data.md); `start_sample` resumes exactly.

    `start_sample` counts this process's samples in this phase (each phase's stream starts at 0; see
    `schedule.phase_position`). With Accelerate, pass `accelerator.process_index` / `num_processes` and do not
    hand this loader to `accelerator.prepare` (it already is this process's part of the stream).
    """
    stream = TrainStream(cfg, batch_size, phase, start_sample, process_index, num_processes)
    workers = int(cfg.num_workers)
    return DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=cfg.pin_memory,
        worker_init_fn=_init_worker if workers > 0 else None,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        persistent_workers=workers > 0,
        multiprocessing_context=cfg.worker_start_method if workers > 0 else None,
        # its own generator: creating an iterator then leaves the global torch RNG alone (exact resume)
        generator=torch.Generator().manual_seed(cfg.seed),
    )
