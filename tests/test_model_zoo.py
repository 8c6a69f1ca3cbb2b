"""Every model config the project builds, one parametrised test each (timm style): forward, backward reaching every
trainable parameter with a finite gradient, and a save / load round trip giving identical outputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import save_file

from psp_hub import PSPGAN, StyleGAN2Generator, load_stylegan2_weights, tiny_config
from tests.model_helpers import make_live, random_batch


@dataclass(frozen=True)
class Case:
    """One model of the zoo: a PSP-GAN (`config` overrides of tiny_config, K references) or a bare prior."""

    name: str
    out_size: int
    refs: int = 0
    config: dict = field(default_factory=dict)
    prior_only: bool = False


CASES = [
    Case("psp64-reference_query-K2", 64, refs=2, config={"fusion_direction": "reference_query"}),
    Case("psp64-input_query-K2", 64, refs=2, config={"fusion_direction": "input_query"}),
    Case("psp64-K0", 64, refs=0),
    Case("psp64-windowed-full_sft-K2", 64, refs=2, config={"fusion_global_max_resolution": 8, "sft_half": False}),
    Case("psp128-input_query-K2", 128, refs=2, config={"fusion_direction": "input_query"}),
    Case("psp128-reference_size64-K2", 128, refs=2, config={"reference_size": 64}),
    Case("prior32", 32, prior_only=True),
    Case("prior64-cm2", 64, prior_only=True, config={"channel_multiplier": 2}),
]


def _prior(case: Case) -> StyleGAN2Generator:
    return StyleGAN2Generator(
        case.out_size, **({"style_dim": 16, "n_mlp": 2, "narrow": 1 / 16, "max_channels": 32} | case.config)
    )


def _build(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    if case.prior_only:
        return _prior(case)
    return make_live(PSPGAN(tiny_config(case.out_size, **case.config)))


def _run(model: torch.nn.Module, case: Case, randomize_noise: bool) -> list[torch.Tensor]:
    """The images for fixed inputs: two z codes mixed at layer 2 for a prior; for PSP-GAN, a degraded face and K
    references restored, then the U-Net's RGB images (what the U-Net loss trains)."""
    if case.prior_only:
        gen = torch.Generator().manual_seed(1)
        z = [torch.randn(2, model.style_dim, generator=gen) for _ in range(2)]
        return [model(z, randomize_noise=randomize_noise, mixing_index=2)]
    lq, refs = random_batch(case.out_size, batch=2, k=case.refs, seed=1)
    out = model(lq, refs if case.refs else None, randomize_noise=randomize_noise, return_unet_images=True)
    return [out.image, *out.unet_images]


def _save_and_load(model: torch.nn.Module, case: Case, folder) -> torch.nn.Module:
    if case.prior_only:
        save_file(model.state_dict(), str(folder / "prior.safetensors"))
        torch.manual_seed(1)  # different initial weights: the file must replace all of them
        return load_stylegan2_weights(_prior(case), folder / "prior.safetensors")
    model.save_pretrained(folder)
    return PSPGAN.from_pretrained(str(folder))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forward_backward_and_round_trip(case: Case, tmp_path):
    model = _build(case).train()
    images = _run(model, case, randomize_noise=True)
    assert images[0].shape == (2, 3, case.out_size, case.out_size) and all(torch.isfinite(x).all() for x in images)

    sum(x.square().mean() for x in images).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    # without references the reference encoder and the fusion take no part; every other parameter must learn
    idle = {n for n in trainable if not case.prior_only and case.refs == 0 and n.startswith(("ref_unet.", "fusion."))}
    dead = [n for n, p in trainable.items() if n not in idle and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not dead, f"no gradient reaches {dead}"
    assert all(torch.isfinite(trainable[n].grad).all() for n in trainable if n not in idle)
    assert all(trainable[n].grad is None for n in idle)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if case.prior_only:
        assert not frozen
    else:  # restoration feeds W+ codes straight to the synthesis network: only the mapping MLP stays frozen
        assert len(trainable) > 50 and frozen and all(n.startswith("generator.style_mlp.") for n in frozen)

    model.eval()
    with torch.no_grad():
        before = _run(model, case, randomize_noise=False)
        loaded = _save_and_load(model, case, tmp_path).eval()
        after = _run(loaded, case, randomize_noise=False)
    assert sorted(loaded.state_dict()) == sorted(model.state_dict())
    for a, b in zip(after, before, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
