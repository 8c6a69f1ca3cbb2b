"""Per-sample random generators keyed by (seed, stream, index): the same sample gets the same draws anywhere."""

from __future__ import annotations

import zlib

import numpy as np

PHASES = {"main": 0, "boost": 1, "validation": 2, "test": 3, "train": 4}


def stream_key(name: str) -> int:
    """Stable integer for a phase / split name."""
    return PHASES.get(name, zlib.crc32(name.encode()) + 100)


def sample_generators(seed: int, stream: str, part: int, index: int, n: int = 4) -> list[np.random.Generator]:
    """`n` independent generators for one sample (geometry, references, degradation, augmentation).

    Keyed only by (seed, stream, process part, global sample index), so worker scheduling, batch size and
    resuming never change what a sample looks like.
    """
    seq = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, stream_key(stream), int(part), int(index)])
    return [np.random.default_rng(s) for s in seq.spawn(n)]
