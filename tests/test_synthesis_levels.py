"""benchmarks/synthesis_levels.py reads the decoder's running RGB sum at every level and finds added eye/mouth detail."""

from __future__ import annotations

import torch

from psp_hub.models import PSPGAN, tiny_config
from tests.benchmark_scripts import load_benchmark
from tests.model_helpers import random_batch

BOXES = torch.tensor([[[8.0, 8.0, 24.0, 24.0], [40.0, 8.0, 56.0, 24.0], [24.0, 40.0, 40.0, 56.0]]])  # 16 px squares


def test_box_mask_scales_the_boxes_to_each_level():
    bench = load_benchmark("synthesis_levels")
    full = bench.box_mask(BOXES, 64, 64)
    assert full.shape == (1, 1, 64, 64) and int(full.sum()) == 3 * 16 * 16
    half = bench.box_mask(BOXES, 32, 64)
    assert int(half.sum()) == 3 * 8 * 8 and bool(half[0, 0, 4, 4]) and not bool(half[0, 0, 0, 0])


def test_detail_inside_the_boxes_is_told_from_detail_elsewhere():
    bench = load_benchmark("synthesis_levels")
    target = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    target = torch.nn.functional.avg_pool2d(target, 3, 1, 1)  # some detail, not the maximum
    batch = {"target": target, "boxes": BOXES}
    same = bench.detail_by_level({32: torch.nn.functional.interpolate(target, size=32, mode="area"), 64: target}, batch)
    assert all(abs(v - 1.0) < 1e-5 for level in same.values() for v in level.values())
    inside = bench.box_mask(BOXES, 64, 64)
    speckled = target + 0.5 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1)) * inside
    report = bench.detail_by_level({64: speckled}, batch)[64]
    assert report["components"] > 1.5 and abs(report["rest"] - 1.0) < 0.05  # the 3x3 mean leaks a pixel out


def test_level_sums_end_in_the_output():
    bench = load_benchmark("synthesis_levels")
    model = PSPGAN(tiny_config(64)).eval()
    lq, refs = random_batch(64, batch=2, k=2, seed=3, lq_size=64)
    batch = {"lq": lq, "refs": refs, "ref_mask": torch.ones(2, 2, dtype=torch.bool)}
    sums = bench.level_sums(model, batch)
    assert sorted(sums) == [8, 16, 32, 64]
    with torch.no_grad():
        assert torch.equal(sums[64], model(lq, refs, batch["ref_mask"]).image)
    assert not model.generator.to_rgbs[0]._forward_hooks  # the hooks are gone
