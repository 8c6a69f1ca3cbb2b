"""The training validator scores a model with loss networks in either precision (fp32, or bf16 under loss_nets_bf16)."""

from __future__ import annotations

import pytest
import torch

from psp_hub.data import DataConfig
from psp_hub.identity import IdentityEncoder
from psp_hub.models import PSPGAN, tiny_config
from psp_hub.training.validation import Validator


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
    assert set(scores) == {"val/psnr", "val/ssim", "val/lpips", "val/identity"}
    assert all(torch.isfinite(torch.tensor(v)) for v in scores.values())
    assert -1.0 <= scores["val/identity"] <= 1.0
    assert model.training  # the validator restores the mode it found
