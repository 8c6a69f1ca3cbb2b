"""Golden outputs: a tiny seeded PSP-GAN and prior pinned to a few numbers, so a refactor that changes what the model
computes fails here (diffusers style: a slice of the output for a fixed input, tolerance 1e-4).

The weights are drawn per parameter from a generator seeded by the parameter's name, so the values pin the function
and the state-dict layout, not the order in which modules happen to be constructed. If a change is meant to alter
the numbers, regenerate them with `python -m tests.test_golden` and say why in the commit.
"""

from __future__ import annotations

import math
import zlib

import torch

from psp_hub import PSPGAN, StyleGAN2Generator, tiny_config
from tests.model_helpers import random_batch

TOLERANCE = 1e-4
# Printed by `python -m tests.test_golden` (torch 2.14.1, CPU, float32).
# fmt: off
PSPGAN_K2_SLICE = [-3.303903, -3.075627, -2.816172, -2.619299, 1.421677, 1.396866, 1.377330, 1.318205, 2.309785, 2.199893, 2.016416, 1.819775]
PSPGAN_K0_SLICE = [-5.006106, -4.881677, -4.434696, -4.219529, 0.936784, 0.862017, 0.976839, 0.913873, 1.538612, 1.178091, 0.967116, 0.858084]
PSPGAN_LATENT_SLICE = [-0.222836, -0.243767, -0.106638, -0.081406, -0.453758, -0.109284, 0.212656, 0.600582]
PRIOR_SLICE = [-0.527745, -0.180800, -0.206621, -0.155328, 0.546694, 0.936529, 0.724710, 0.894733, -1.638366, -1.910279, -1.810928, -2.061537]
# fmt: on


def seed_by_name(module: torch.nn.Module) -> torch.nn.Module:
    """Overwrite every parameter and buffer with values drawn from a generator seeded by its name.

    Matrices and kernels get N(0, 1 / fan_in), vectors N(0, 0.1^2) around their current mean (1 for modulation
    biases, 0 for the rest), so activations stay in a useful range whatever the init code does.
    """
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
            if t.ndim >= 2 and "noise" not in name:
                fan_in = math.prod(t.shape[2:] if t.ndim == 5 else t.shape[1:])
                t.copy_(noise / math.sqrt(fan_in))
            elif "noise" in name:
                t.copy_(noise)
            else:
                t.copy_(noise * 0.1 + (1.0 if name.endswith("modulation.bias") else 0.0))
    return module


def golden_pspgan() -> PSPGAN:
    return seed_by_name(PSPGAN(tiny_config(64, fusion_direction="reference_query"))).eval()


def golden_prior() -> StyleGAN2Generator:
    return seed_by_name(StyleGAN2Generator(32, style_dim=16, n_mlp=2, narrow=1 / 16, max_channels=32)).eval()


@torch.no_grad()
def current_values() -> dict[str, list[float]]:
    """The pinned slices, computed now: a centre row of the restored image with and without two references, the
    first W+ codes, and a row of the prior's mixed sample."""
    model = golden_pspgan()
    lq, refs = random_batch(64, batch=1, k=2, seed=0)
    with_refs = model(lq, refs)
    blind = model(lq, None)
    gen = torch.Generator().manual_seed(0)
    z = [torch.randn(1, 16, generator=gen) for _ in range(2)]
    prior = golden_prior()(z, randomize_noise=False, mixing_index=3)
    return {
        "PSPGAN_K2_SLICE": with_refs.image[0, :, 32, 28:32].flatten().tolist(),
        "PSPGAN_K0_SLICE": blind.image[0, :, 32, 28:32].flatten().tolist(),
        "PSPGAN_LATENT_SLICE": with_refs.latents[0, :2, :4].flatten().tolist(),
        "PRIOR_SLICE": prior[0, :, 16, 12:16].flatten().tolist(),
    }


def test_outputs_match_the_pinned_values():
    values = current_values()
    expected = {name: globals()[name] for name in values}
    for name, got in values.items():
        want = torch.tensor(expected[name])
        assert want.numel() == len(got) > 0, f"{name} is not pinned"
        torch.testing.assert_close(torch.tensor(got), want, rtol=0, atol=TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


def test_references_and_mixing_change_the_pinned_values():
    """The slices are sensitive: the references move the image, and the slice is not saturated or constant."""
    values = current_values()
    k2, k0 = torch.tensor(values["PSPGAN_K2_SLICE"]), torch.tensor(values["PSPGAN_K0_SLICE"])
    assert (k2 - k0).abs().max() > 10 * TOLERANCE
    for got in values.values():
        t = torch.tensor(got)
        assert t.std() > 10 * TOLERANCE and torch.isfinite(t).all()


if __name__ == "__main__":
    for key, vals in current_values().items():
        print(f"{key} = [{', '.join(f'{v:.6f}' for v in vals)}]")
