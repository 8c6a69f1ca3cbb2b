"""benchmarks/inductor_bytes.py: inductor's own count of the bytes each compiled graph's kernels move, split into
inductor's own (fused) kernels and extern ones, on a graph whose traffic is known exactly."""

from __future__ import annotations

import torch

from tests.benchmark_scripts import load_benchmark


def test_a_matmul_and_its_fused_epilogue_are_counted_apart():
    bench = load_benchmark("inductor_bytes")
    x, w = torch.randn(512, 256), torch.randn(256, 1024)

    def matmul_then_pointwise(a, b):
        return ((a @ b) * 2 + 1).sin()

    with bench.counted_graphs() as graphs:
        out = torch.compile(matmul_then_pointwise, backend="inductor", dynamic=False)(x, w)
    torch.testing.assert_close(out, matmul_then_pointwise(x, w), rtol=1e-4, atol=1e-4)
    assert len(graphs) == 1
    (graph,) = graphs
    assert graph["graph"].endswith(" matmul_then_pointwise forward")
    mb = 4 / 2**20  # fp32 bytes per element, in MB
    product = 512 * 1024 * mb
    # one fused kernel reads the product and writes the result; the matmul reads both factors and writes the product
    assert graph["own_kernels"] == 1 and graph["own_mb"] == round(2 * product, 1)
    assert graph["extern_mb"] == round((512 * 256 + 256 * 1024) * mb + product, 1)
    assert list(graph["extern_mb_by_kernel"]) == ["extern_kernels.mm"]
    assert graph["largest_own"][0]["ops"].count("+") >= 2  # the mul, add and sin named, fused
    assert bench.totals(graphs)["own_mb"] == graph["own_mb"]
