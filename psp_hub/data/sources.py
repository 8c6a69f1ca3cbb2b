"""Open the dataset as streams with `datasets`: one endless, buffer-shuffled stream per group and process."""

from __future__ import annotations

import atexit
import warnings
import weakref
from collections.abc import Iterator

import datasets
import pyarrow as pa
from datasets.distributed import split_dataset_by_node

from .config import DataConfig
from .rng import stream_key
from .schedule import older_fraction_for
from .schema import GROUPS, STREAM_COLUMNS

ARROW_BATCH = 256


def data_files(path: str, config: str, split: str, revision: str | None = None) -> list[str]:
    """Resolved shard files (local paths or hf:// URLs) of one config and split; [] when there are none."""
    try:
        builder = datasets.load_dataset_builder(path, config, revision=revision)
    except ValueError:  # e.g. the card has no such config
        return []
    files = builder.config.data_files or {}
    return [str(f) for f in files.get(split, [])]


def open_stream(
    path: str, config: str, split: str, revision: str | None = None, columns=STREAM_COLUMNS
) -> datasets.IterableDataset:
    """`load_dataset(..., streaming=True)` of one config / split, images left encoded (decoded per sample later)."""
    ds = datasets.load_dataset(path, config, split=split, streaming=True, revision=revision)
    return ds.decode(False).select_columns(list(columns))


def group_seed(cfg: DataConfig, phase: str, group: str) -> int:
    """Shuffle seed of one group's stream in one phase."""
    return (cfg.seed * 1000 + stream_key(phase)) * 2 + GROUPS.index(group)


def available_groups(cfg: DataConfig) -> tuple[bool, bool]:
    """Whether the split has general / older shards."""
    return tuple(bool(data_files(cfg.path, g, cfg.split, cfg.revision)) for g in GROUPS)  # type: ignore[return-value]


def group_stream(
    cfg: DataConfig, group: str, phase: str, process_index: int = 0, num_processes: int = 1
) -> datasets.IterableDataset:
    """One group, this process's part (`split_dataset_by_node`), repeated without end, shuffled with a buffer.

    Repeating under the shuffle keeps the stream endless with no epoch restarts (each restart of a parquet
    stream costs datasets a 5 s pause), while the buffer keeps mixing across passes.
    """
    ds = open_stream(cfg.path, group, cfg.split, cfg.revision)
    if num_processes > 1:
        ds = split_dataset_by_node(ds, rank=process_index, world_size=num_processes, strategy=cfg.node_split)
    return ds.repeat(None).shuffle(
        seed=group_seed(cfg, phase, group), buffer_size=cfg.shuffle_buffer, max_buffer_input_shards=1
    )


_LIVE_CURSORS: weakref.WeakSet[RowCursor] = weakref.WeakSet()


@atexit.register
def _close_live_cursors() -> None:
    """Close open parquet scans before interpreter teardown and let their threads wind down.

    An arrow scan still running when the interpreter tears down can abort the process ("terminate called
    without an active exception", apache/arrow#39862, huggingface/datasets#7566); closing, collecting and a short
    pause is the known workaround.
    """
    cursors = list(_LIVE_CURSORS)
    for cursor in cursors:
        cursor.close()
    if cursors:
        import gc
        import time

        gc.collect()
        time.sleep(0.1)


class RowCursor:
    """Walk an endless arrow-formatted stream row by row; skipping never converts rows to Python."""

    def __init__(self, ds: datasets.IterableDataset):
        self._batches: Iterator[pa.Table] = iter(ds.with_format("arrow").iter(batch_size=ARROW_BATCH))
        self._table: pa.Table | None = None
        self._pos = 0
        _LIVE_CURSORS.add(self)

    def _fill(self) -> pa.Table:
        """The table holding the current row (fetching the next batch when needed)."""
        while self._table is None or self._pos >= len(self._table):
            try:
                self._table = next(self._batches)
            except StopIteration:
                raise RuntimeError("the data stream ended (no rows in this split / process part?)") from None
            self._pos = 0
        return self._table

    def skip(self, n: int) -> None:
        """Advance by n rows."""
        while n > 0:
            table = self._fill()
            step = min(n, len(table) - self._pos)
            self._pos += step
            n -= step

    def close(self) -> None:
        """Stop the underlying readers now (not at interpreter exit)."""
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()
        _LIVE_CURSORS.discard(self)

    def take(self) -> dict:
        """The current row as a dict, then advance."""
        table = self._fill()
        row = table.slice(self._pos, 1).to_pylist()[0]
        self._pos += 1
        return row


def interleaved_stream(
    cfg: DataConfig, phase: str = "main", process_index: int = 0, num_processes: int = 1
) -> datasets.IterableDataset:
    """The same mix as a plain `datasets.IterableDataset` via `interleave_datasets` (for other trainers, inspection).

    The training loader does not use it (a thread hop per example makes it ~15x slower, see mixing.py).
    """
    frac = older_fraction_for(cfg, phase)
    has = available_groups(cfg)
    parts, probs = [], []
    for group, present, p in zip(GROUPS, has, (1.0 - frac, frac)):
        if present and p > 0:
            parts.append(group_stream(cfg, group, phase, process_index, num_processes))
            probs.append(p)
    if frac > 0 and not has[1]:
        warnings.warn(f"split {cfg.split!r} of {cfg.path} has no older faces", stacklevel=2)
    if not parts:
        raise FileNotFoundError(f"nothing to stream for split {cfg.split!r} in {cfg.path}")
    if len(parts) == 1:
        return parts[0]
    total = sum(probs)
    return datasets.interleave_datasets(
        parts, probabilities=[p / total for p in probs], seed=cfg.seed + stream_key(phase)
    )
