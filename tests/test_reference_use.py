"""benchmarks/reference_use.py tells a model that reads its references from one that does not, and a collapsed
reference encoder from a healthy one."""

from __future__ import annotations

import torch

from psp_hub.models import PSPGAN, tiny_config
from tests.benchmark_scripts import load_benchmark
from tests.model_helpers import make_live, random_batch


def _batch() -> dict:
    lq, refs = random_batch(64, batch=3, k=2, seed=3, lq_size=64)
    return {"lq": lq, "refs": refs, "ref_mask": torch.ones(3, 2, dtype=torch.bool)}


def test_blind_and_live_models_and_a_collapsed_encoder():
    bench = load_benchmark("reference_use")
    torch.manual_seed(0)
    blind = bench.reference_use(PSPGAN(tiny_config(64)).eval(), _batch())  # zero-initialised fusion output
    assert blind["own_minus_none"] == 0 and blind["own_minus_stranger"] == 0
    live = make_live(PSPGAN(tiny_config(64, reference_size=32))).eval()
    used = bench.reference_use(live, _batch())
    assert used["own_minus_none"] > 0 and used["own_minus_stranger"] > 0
    assert sorted(used["ref_encoder_spread"]) == [4, 8, 16, 32]  # E_p at the reference size, not 64
    assert used["ref_encoder_spread"][32] > 0.05
    with torch.no_grad():  # every person's features the same: a constant stem
        live.ref_unet.stem.weight.zero_()
    collapsed = bench.reference_use(live, _batch())
    assert all(v < 1e-3 for v in collapsed["ref_encoder_spread"].values())
    assert collapsed["own_minus_stranger"] < 1e-6
