"""Training-loader throughput (samples/s) at given output sizes and worker counts: the loader must outrun training.

    python benchmarks/data_throughput.py --path data/psp-faces128 --sizes 128 512 --workers 2 --seconds 30
    python benchmarks/data_throughput.py --loader resident --device cuda --batch-size 64 --sizes 256
Prints one JSON line per (size, workers) and, with --json, writes them all to a file. `--loader resident` times the
resident faces' batches (decoded once, degraded in batch on --device; startup_s includes the decoding).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from psp_hub.data import DataConfig, TrainStream, build_train_batches
from psp_hub.data.config import DEFAULT_DATASET_DIR


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(cfg: DataConfig, batch_size: int, seconds: float, warmup_batches: int, device: str = "cpu") -> dict:
    """Samples/s of the loader after warm-up (worker start, index building, caches; resident: decoding)."""
    t0 = time.perf_counter()
    it = build_train_batches(cfg, batch_size=batch_size, device=device)
    for _ in range(warmup_batches):
        next(it)
    _sync(device)
    startup = time.perf_counter() - t0
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < seconds:
        n += next(it)["target"].shape[0]
    _sync(device)
    rate = n / (time.perf_counter() - t1)
    del it
    return {
        "out_size": cfg.out_size,
        "loader": cfg.loader,
        "workers": cfg.num_workers,
        "batch_size": batch_size,
        "samples": n,
        "samples_per_s": round(rate, 1),
        "startup_s": round(startup, 1),
        "device": device,
    }


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
    p.add_argument("--loader", choices=["workers", "resident"], default="workers")
    p.add_argument("--device", default="cpu", help="resident loader: where the batches are made (e.g. cuda)")
    a = p.parse_args(argv)
    results = []
    host = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    for size in a.sizes:
        for workers in a.workers:
            cfg = DataConfig(
                path=a.path, out_size=size, num_workers=workers, max_references=a.max_references, loader=a.loader
            )
            r = {**measure(cfg, a.batch_size, a.seconds, a.warmup_batches, a.device), **host}
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
