"""The training validator scores a model with loss networks in either precision (fp32, or bf16 under loss_nets_bf16)."""

from __future__ import annotations

import pytest
import torch

from psp_hub.data import DataConfig
from psp_hub.identity import IdentityEncoder
from psp_hub.models import PSPGAN, tiny_config
from psp_hub.training.validation import Validator
from tests.model_helpers import make_live


def _samples(n: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "lq": torch.rand(3, 64, 64, generator=g) * 2 - 1,
            "target": torch.rand(3, 64, 64, generator=g) * 2 - 1,
            "refs": torch.rand(2, 3, 64, 64, generator=g) * 2 - 1,
            "ref_mask": torch.tensor([True, False]),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_validator_scores_with_the_identity_net_in_its_training_precision(weights, dtype):
    torch.manual_seed(0)
    model = PSPGAN(tiny_config(64))
    encoder = IdentityEncoder.from_onnx(weights / "mobilefacenet_arcface_112.onnx").to(dtype)
    validator = Validator(DataConfig(), 0, torch.device("cpu"), encoder, samples=_samples())
    scores = validator(model, batch_size=2)
    assert set(scores) == {"val/psnr", "val/ssim", "val/lpips", "val/identity", "val/ref_gain"}
    assert all(torch.isfinite(torch.tensor(v)) for v in scores.values())
    assert -1.0 <= scores["val/identity"] <= 1.0
    assert model.training  # the validator restores the mode it found


def test_reference_gain_is_zero_for_a_model_that_ignores_references_and_not_for_one_that_uses_them(weights):
    """The collapse monitor: a fresh PSP-GAN's fusion adds exactly nothing (zero-initialised output), so own and
    another sample's references give the same identity; with live fusion weights they differ."""
    torch.manual_seed(0)
    encoder = IdentityEncoder.from_onnx(weights / "mobilefacenet_arcface_112.onnx")
    validator = Validator(DataConfig(), 0, torch.device("cpu"), encoder, samples=_samples(4))
    blind = PSPGAN(tiny_config(64))
    assert validator(blind, batch_size=4)["val/ref_gain"] == 0.0
    live = make_live(PSPGAN(tiny_config(64)))
    assert abs(validator(live, batch_size=4)["val/ref_gain"]) > 1e-4
