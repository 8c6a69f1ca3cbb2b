"""Training-loader throughput (samples/s) at given output sizes and worker counts: the loader must outrun training.

    python benchmarks/data_throughput.py --path data/psp-faces128 --sizes 128 512 --workers 2 --seconds 30
Prints one JSON line per (size, workers) and, with --json, writes them all to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from psp_hub.data import DataConfig, TrainStream, build_train_dataloader
from psp_hub.data.config import DEFAULT_DATASET_DIR


def measure(cfg: DataConfig, batch_size: int, seconds: float, warmup_batches: int) -> dict:
    """Samples/s of the DataLoader after warm-up (worker start, index building, caches)."""
    t0 = time.perf_counter()
    it = iter(build_train_dataloader(cfg, batch_size=batch_size))
    for _ in range(warmup_batches):
        next(it)
    startup = time.perf_counter() - t0
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < seconds:
        n += next(it)["target"].shape[0]
    rate = n / (time.perf_counter() - t1)
    del it
    return {"out_size": cfg.out_size, "workers": cfg.num_workers, "batch_size": batch_size, "samples": n, "samples_per_s": round(rate, 1), "startup_s": round(startup, 1)}


def measure_skip(cfg: DataConfig, n: int) -> dict:
    """Rows/s of the cheap skip a resume does (no decoding)."""
    stream = TrainStream(cfg, 8, start_sample=n)
    t = time.perf_counter()
    next(stream.rows())
    dt = time.perf_counter() - t
    return {"resume_skip_rows": n, "seconds": round(dt, 2), "rows_per_s": round(n / dt)}


def main(argv: list[str] | None = None) -> None:
    """Run the measurements named on the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", default=str(DEFAULT_DATASET_DIR))
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    p.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-references", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup-batches", type=int, default=4)
    p.add_argument("--skip", type=int, default=200_000, help="also time a resume that skips this many samples (0: no)")
    p.add_argument("--json", default=None, help="write all results to this file")
    a = p.parse_args(argv)
    results = []
    host = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    for size in a.sizes:
        for workers in a.workers:
            cfg = DataConfig(path=a.path, out_size=size, num_workers=workers, max_references=a.max_references)
            r = {**measure(cfg, a.batch_size, a.seconds, a.warmup_batches), **host}
            print(json.dumps(r), flush=True)
            results.append(r)
    if a.skip:
        r = measure_skip(DataConfig(path=a.path), a.skip)
        print(json.dumps(r), flush=True)
        results.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
