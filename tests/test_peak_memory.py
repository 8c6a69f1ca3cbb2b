"""The CPU peak-memory probe used by the benchmark sees a large allocation made (and freed) inside its block."""

import psutil
import pytest
import torch

from psp_hub.benchmarking.peak_memory import PeakMemory


def test_cpu_peak_sees_a_transient_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20, dtype=torch.float32)  # 256 MiB, touched so the pages are resident
        block.add_(1)
        memory.wait_for_reading()  # however busy the machine, the sampler has seen the block before it goes
        del block
    after = psutil.Process().memory_info().rss / 2**20
    assert memory.mib >= memory.start_mib + 200, (memory.start_mib, memory.mib)
    assert memory.mib >= after + 200  # the peak is not just the final resident size


def test_benchmark_reports_latency_and_memory_on_cpu():
    from psp_hub.benchmarking.forward import main

    rows = main(
        [
            "--size",
            "64",
            "--tiny",
            "--device",
            "cpu",
            "--batches",
            "1",
            "2",
            "--refs",
            "0",
            "2",
            "--dtypes",
            "fp32",
            "--warmup",
            "0",
            "--iters",
            "1",
        ]
    )
    assert {(r["batch"], r["refs"], r["mode"]) for r in rows} == {
        (b, k, m) for b in (1, 2) for k in (0, 2) for m in ("direct", "cached")
    }
    rss = psutil.Process().memory_info().rss / 2**20
    for r in rows:
        assert r["ms"] > 0 and r["faces_per_s"] == pytest.approx(r["batch"] / (r["ms"] / 1e3))
        assert 50 < r["peak_mib"] < rss * 4
