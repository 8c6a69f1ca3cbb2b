"""Check every input once (in parallel), caching results so an interrupted build resumes where it stopped."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..sharpness import sharp_px
from .metadata import InputRecord

CHUNK = 256


@dataclass
class ScanResult:
    """Outcome of checking one input: ok, or the reason it is skipped, plus what the shards need."""

    file_name: str
    ok: bool
    reason: str | None = None  # missing, corrupt, not_square, too_small, tiny_face, low_score, no_face
    size: int | None = None  # side of the (aligned) image in pixels
    sha1: str | None = None  # of the stored image bytes, to tell duplicate photos apart
    landmarks: list[list[float]] | None = None  # photo mode: in the aligned frame
    native_px: int | None = None  # photo mode: source pixels spanned by the crop
    sharp_px: int | None = None  # measured true sharpness (sharpness.py), at most the measuring crop's size
    det_score: float | None = None
    faces_in_photo: int | None = None
    cached_image: str | None = None  # photo mode: aligned crop under the build's cache folder
    stamp: list[int] = field(default_factory=list)  # (file size, mtime_ns) the result is valid for


def file_stamp(path: Path) -> list[int]:
    """(size, mtime_ns) of a file, or [] when it is missing: a changed file is checked again."""
    try:
        st = path.stat()
    except OSError:
        return []
    return [int(st.st_size), int(st.st_mtime_ns)]


def check_aligned(path: Path, file_name: str) -> ScanResult:
    """Decode an aligned face fully (catches truncation) and check it is a square image."""
    from PIL import Image

    stamp = file_stamp(path)
    if not stamp:
        return ScanResult(file_name, False, "missing")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            w, h = im.size
            rgb = np.asarray(im.convert("RGB"))
    except Exception:  # noqa: BLE001  any decoder failure means a bad file, never a crash
        return ScanResult(file_name, False, "corrupt", stamp=stamp)
    if w != h:
        return ScanResult(file_name, False, "not_square", stamp=stamp)
    if w < 16:
        return ScanResult(file_name, False, "too_small", stamp=stamp)
    return ScanResult(file_name, True, size=w, sha1=hashlib.sha1(data).hexdigest(), sharp_px=sharp_px(rgb), stamp=stamp)


def _load_cache(path: Path) -> dict[str, ScanResult]:
    """Results of earlier (possibly interrupted) runs; a torn last line is ignored."""
    out: dict[str, ScanResult] = {}
    if not path.is_file():
        return out
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                res = ScanResult(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            out[res.file_name] = res
    return out


_WORKER_FN: Callable[[InputRecord], ScanResult] | None = None


def _init_worker(factory: Callable[[], Callable[[InputRecord], ScanResult]]) -> None:
    """Build the per-process checker once (a detector in photo mode) and keep libraries single-threaded."""
    global _WORKER_FN
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _WORKER_FN = factory()


def _run_chunk(records: Sequence[InputRecord]) -> list[ScanResult]:
    """Check a chunk in a worker process."""
    assert _WORKER_FN is not None
    return [_WORKER_FN(r) for r in records]


def _chunks(items: Sequence, n: int) -> Iterator[Sequence]:
    """Consecutive slices of n items."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


def scan_inputs(
    records: Sequence[InputRecord],
    input_dir: Path,
    checker_factory: Callable[[], Callable[[InputRecord], ScanResult]],
    cache_path: Path,
    workers: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, ScanResult]:
    """Check all records (reusing cached results for unchanged files); returns file_name -> result."""
    cache = _load_cache(cache_path)
    todo = [
        r
        for r in records
        if r.file_name not in cache or cache[r.file_name].stamp != file_stamp(input_dir / r.file_name)
    ]
    results = {r.file_name: cache[r.file_name] for r in records if r.file_name in cache}
    if progress:
        progress(
            f"scan: {len(results) - len([r for r in todo if r.file_name in results])} cached, {len(todo)} to check"
        )
    if todo:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        workers = workers or os.cpu_count() or 1
        with cache_path.open("a", encoding="utf-8") as out:
            if workers > 1 and len(todo) > CHUNK:
                # spawned processes (arrow / torch threads are not fork-safe); a pool that breaks raises, never hangs
                ctx = mp.get_context("spawn")
                with ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=_init_worker, initargs=(checker_factory,)
                ) as pool:
                    _write_all(pool.map(_run_chunk, list(_chunks(todo, CHUNK))), out, results, progress, len(todo))
            else:
                fn = checker_factory()
                _write_all(([fn(r) for r in c] for c in _chunks(todo, CHUNK)), out, results, progress, len(todo))
    return results


def _write_all(chunks, out, results: dict, progress, total: int) -> None:
    """Append each finished chunk to the cache (flushed), so an interrupt loses at most one chunk per worker."""
    done = 0
    for chunk in chunks:
        for res in chunk:
            results[res.file_name] = res
            out.write(json.dumps(asdict(res)) + "\n")
        out.flush()
        done += len(chunk)
        if progress:
            progress(f"scan: {done}/{total}")


class AlignedChecker:
    """Checker for an aligned corpus: decode each file from the input folder."""

    def __init__(self, input_dir: Path):
        self.input_dir = Path(input_dir)

    def __call__(self, record: InputRecord) -> ScanResult:
        """Check one listed file."""
        return check_aligned(self.input_dir / record.file_name, record.file_name)
