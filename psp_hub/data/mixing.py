"""The 70/30 general/older mix as a seeded choice per sample index, with O(1)-per-block counting for resume.

`datasets.interleave_datasets` gives the same mix (see `sources.interleaved_stream`) but hops a thread per
example: measured here at ~800 rows/s against ~12,000 rows/s for the shuffled sources themselves. Every DataLoader
worker walks the whole sample sequence and a resume must skip millions of rows, so the training path draws the
source of each index itself: a Bernoulli(f) per index, in blocks keyed by (seed, stream, part, block).
"""

from __future__ import annotations

import numpy as np

BLOCK = 4096
_MIX_KEY = 7_000_001


class MixSchedule:
    """Which source (0 = general, 1 = older) feeds each global sample index of one stream."""

    def __init__(self, older_fraction: float, seed: int, stream_key: int, part: int, sources: tuple[bool, bool]):
        self.fraction = float(older_fraction)
        self.seed, self.stream_key, self.part = int(seed), int(stream_key), int(part)
        self.has_general, self.has_older = sources
        self._block_id: int | None = None
        self._block: np.ndarray | None = None

    def _draw_block(self, b: int) -> np.ndarray:
        """Source choices of indices [b * BLOCK, (b + 1) * BLOCK)."""
        if not self.has_older:
            return np.zeros(BLOCK, dtype=np.int8)
        if not self.has_general:
            return np.ones(BLOCK, dtype=np.int8)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.stream_key, self.part, _MIX_KEY, b])
        return (rng.random(BLOCK) < self.fraction).astype(np.int8)

    def block(self, b: int) -> np.ndarray:
        """Cached choices of one block."""
        if self._block_id != b:
            self._block, self._block_id = self._draw_block(b), b
        assert self._block is not None
        return self._block

    def source(self, index: int) -> int:
        """0 (general) or 1 (older) for this sample index."""
        return int(self.block(index // BLOCK)[index % BLOCK])

    def counts_before(self, n: int) -> tuple[int, int]:
        """How many of the first n samples come from each source (to skip them in the sources)."""
        full, rest = divmod(int(n), BLOCK)
        older = sum(int(self._draw_block(b).sum()) for b in range(full))
        if rest:
            older += int(self._draw_block(full)[:rest].sum())
        return n - older, older


def native_sizes(sharp_px: np.ndarray, stored: np.ndarray, out_size: int, threshold: int) -> np.ndarray:
    """Each face's native size under the mixed-resolution rule: out_size where its sharpness (`sharp_px`, NaN where
    unmeasured, capped by the stored side) reaches `threshold`, else out_size // 2; all out_size when threshold is 0.

    Two levels, because the sets this serves have two: sharp256 measures 128..~400 px (median 228; 5,038 of 9,315
    train faces at >= 224) and the 128 px corpus is 128 px at most.
    """
    sharp = np.fmin(np.asarray(sharp_px, dtype=np.float64), np.asarray(stored, dtype=np.float64))
    if threshold <= 0:
        return np.full(sharp.shape, out_size, dtype=np.int64)
    return np.where(sharp >= threshold, out_size, out_size // 2).astype(np.int64)


def native_levels(out_size: int, threshold: int) -> tuple[int, ...]:
    """The sizes per-sample losses are compared at: (out_size, out_size // 2) under the rule, () when it is off."""
    return (out_size, out_size // 2) if threshold > 0 else ()
