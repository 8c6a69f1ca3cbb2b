"""Random access to any photo of a split by id (the references), straight from its parquet shards.

Streaming gives rows in order; references need other rows by id. Each shard is opened memory-mapped (local) or through
fsspec (an `hf://` URL, read by byte ranges), its `id` column indexed once, and a whole row group is read when
one of its images is wanted; image bytes are kept in an LRU cache bounded in megabytes.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import fsspec
import pyarrow.parquet as pq

_LIVE_STORES: weakref.WeakSet[ReferenceStore] = weakref.WeakSet()


@atexit.register
def _close_live_stores() -> None:
    """Close parquet handles before interpreter teardown (open arrow readers at exit can abort the process)."""
    for store in list(_LIVE_STORES):
        store.close()


def open_parquet(url: str) -> pq.ParquetFile:
    """A local file is memory-mapped by arrow itself; anything else (hf://, s3://...) goes through fsspec."""
    local = url.removeprefix("file://")
    if "://" not in local and os.path.exists(local):
        return pq.ParquetFile(local, memory_map=True)
    return pq.ParquetFile(fsspec.open(url, "rb").open())


class ReferenceStore:
    """id -> encoded image bytes for the rows of a set of parquet files (opened lazily, once per process)."""

    def __init__(self, files: Sequence[str], cache_mb: int = 128):
        self.files = list(files)
        self.cache_bytes = int(cache_mb) * 1024 * 1024
        self._reset()

    def _reset(self) -> None:
        """Forget handles, index and cache (they are per process)."""
        self._handles: dict[int, pq.ParquetFile] = {}
        self._index: dict[str, tuple[int, int]] | None = None
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        _LIVE_STORES.add(self)

    def close(self) -> None:
        """Close the open shard handles (reopened lazily if used again)."""
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        """Pickle only the file list and budget: each DataLoader worker opens its own handles."""
        return {"files": self.files, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict) -> None:
        """Restore file list and budget; everything else is rebuilt lazily."""
        self.files, self.cache_bytes = state["files"], state["cache_bytes"]
        self._reset()

    def _file(self, i: int) -> pq.ParquetFile:
        """Open shard i once."""
        if i not in self._handles:
            self._handles[i] = open_parquet(self.files[i])
        return self._handles[i]

    def _build_index(self) -> dict[str, tuple[int, int]]:
        """id -> (file, row group), from the id column only."""
        index: dict[str, tuple[int, int]] = {}
        for fi in range(len(self.files)):
            pf = self._file(fi)
            for rg in range(pf.num_row_groups):
                for row_id in pf.read_row_group(rg, columns=["id"]).column("id").to_pylist():
                    index[row_id] = (fi, rg)
        return index

    def __contains__(self, row_id: str) -> bool:
        """Whether this id is in the store's shards."""
        if self._index is None:
            self._index = self._build_index()
        return row_id in self._index

    def get(self, row_id: str) -> bytes:
        """Encoded image bytes of the row with this id (KeyError when absent)."""
        hit = self._cache.get(row_id)
        if hit is not None:
            self._cache.move_to_end(row_id)
            return hit
        if self._index is None:
            self._index = self._build_index()
        fi, rg = self._index[row_id]
        table = self._file(fi).read_row_group(rg, columns=["id", "image"])
        wanted = None
        for rid, img in zip(table.column("id").to_pylist(), table.column("image").to_pylist()):
            data = img["bytes"]
            if rid == row_id:
                wanted = data
            if rid not in self._cache:
                self._cache[rid] = data
                self._cached += len(data)
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)
        if wanted is None:
            raise KeyError(row_id)
        return wanted
