"""DiffAugment: each transform does what the paper's does, gradients pass, off means untouched, and both stages
train with it (the prior's discriminator and PSP-GAN's global one see augmented reals and fakes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from torch.nn import functional as F

from psp_hub.common.config import ConfigError
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from psp_hub.training import TrainConfig, train
from psp_hub.training.diffaugment import DiffAugment, cutout, parse_policy, translation
from psp_hub.training.objectives import Discriminators, DiscView, PSPGANObjective
from psp_hub.training.stages import make_stage

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("diffaug-data"))


def test_policy_names_and_off_is_the_identity():
    assert parse_policy(" color, translation,cutout ") == ("color", "translation", "cutout")
    assert parse_policy("") == () and not DiffAugment("")
    x = torch.randn(2, 3, 8, 8)
    state = torch.get_rng_state()
    assert DiffAugment("")(x) is x  # the very tensor: no op, and no random draw
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        parse_policy("color,zoom")
    with pytest.raises(ConfigError, match="losses.diffaug"):
        TrainConfig.from_yaml(TINY, ["losses.diffaug=colour"])


def test_translation_shifts_whole_pixels_and_fills_zeros():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 16, 16) + 1.0  # no zero inside the image, so the fill is the only zero
    out = translation(x)
    shifts = set()
    for i in range(16):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(out[i], _shifted(x[i], dy, dx))]
        assert len(found) == 1, i
        shifts.add(found[0])
    assert len(shifts) > 3  # drawn per sample, up to 1/8 of the side (2 px of 16)


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[y, x] = img[y + dy, x + dx], zero outside."""
    h, w = img.shape[-2:]
    padded = F.pad(img, [2, 2, 2, 2])
    return padded[:, 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


def test_cutout_zeroes_one_square_of_half_the_side_per_image():
    torch.manual_seed(1)
    x = torch.ones(32, 3, 16, 16)
    holes = cutout(x)[:, 0] == 0
    areas = holes.flatten(1).sum(1)
    assert (areas <= 64).all() and (areas >= 16).all() and (areas == 64).sum() > 5  # 8x8, clipped at the borders
    for hole in holes:
        ys, xs = torch.nonzero(hole, as_tuple=True)
        assert hole[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()  # one filled rectangle
    assert len({tuple(torch.nonzero(h)[0].tolist()) for h in holes}) > 5


def test_colour_changes_each_sample_differently_and_gradients_pass():
    torch.manual_seed(2)
    x = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = DiffAugment("color,translation,cutout")(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    offsets = (out - x).detach().flatten(1).abs().mean(1)
    assert len(set(offsets.round(decimals=4).tolist())) == 8
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    nhwc = x.detach().contiguous(memory_format=torch.channels_last)
    assert DiffAugment("translation")(nhwc).is_contiguous(memory_format=torch.channels_last)


def test_r1_is_taken_through_the_augmentation():
    """R1 of D composed with T: the gradient reaches the un-augmented reals, zero inside each cutout hole."""
    torch.manual_seed(3)
    disc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    real = torch.rand(4, 3, 16, 16).requires_grad_(True)
    augmented = cutout(real)
    penalty = r1_penalty(disc(augmented), real)
    (grad,) = torch.autograd.grad(disc(augmented).sum(), real, retain_graph=True)
    assert penalty > 0 and (grad[augmented == 0] == 0).all() and (grad != 0).any()
    penalty.backward()  # twice differentiable
    assert disc[0].weight.grad is not None and disc[0].weight.grad.abs().sum() > 0  # (biases do not enter R1)


def _objective_and_discs(diffaug: str):
    torch.manual_seed(0)
    cfg = TrainConfig.from_yaml(TINY, ["losses.perceptual=0", "losses.identity=0", f"losses.diffaug={diffaug!r}"])
    discs = Discriminators(64, narrow=cfg.d_narrow, component_channels=cfg.component_d_channels)
    objective = PSPGANObjective(cfg.losses, 64)
    return objective, DiscView(discs.global_d, dict(discs.components.items()))


def _batch(faces_batch: torch.Tensor) -> dict:
    boxes = torch.tensor([[20.0, 24.0, 32.0, 36.0], [32.0, 24.0, 44.0, 36.0], [24.0, 40.0, 40.0, 52.0]])
    return {"target": faces_batch, "boxes": boxes.expand(len(faces_batch), 3, 4)}


def test_psp_objective_without_diffaug_is_the_plain_formula_and_with_it_differs():
    torch.manual_seed(4)
    target, fake = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    objective, discs = _objective_and_discs("")
    d = objective.discriminator_losses(fake, _batch(target), discs, with_r1=True)
    g = discs.global_d
    assert torch.equal(d["d_global"], d_logistic_loss(g(target), g(fake)))
    real = target.clone().requires_grad_(True)
    assert torch.allclose(d["r1"], 10.0 / 2 * r1_penalty(g(real), real) * 2)
    out = type("Out", (), {"image": fake, "unet_images": []})()
    losses = objective.generator_losses(out, _batch(target), discs, use_unet=False)
    assert torch.equal(losses["gan"], 0.1 * g_nonsaturating_loss(g(fake)))
    assert torch.equal(losses["l1"], 0.1 * F.l1_loss(fake, target))
    augmented, _ = _objective_and_discs("color,translation,cutout")
    d_aug = augmented.discriminator_losses(fake, _batch(target), discs, with_r1=False)
    assert not math.isclose(float(d_aug["d_global"].detach()), float(d["d_global"].detach()), rel_tol=1e-4)


@pytest.mark.slow
def test_prior_stage_trains_two_steps_with_diffaug(dataset, tmp_path):
    cfg = TrainConfig.from_yaml(
        TINY,
        [
            f"data.path={dataset}",
            f"output_dir={tmp_path / 'prior'}",
            "stage=prior",
            "max_steps=2",
            "losses.r1_every=1",  # R1 through the augmentation on both steps
            "losses.diffaug='color,translation,cutout'",
            "validate_every=0",
            "images_every=0",
            "tracker=none",
        ],
    )
    stage = make_stage(cfg, Accelerator(cpu=True))
    assert stage.augment.names == ("color", "translation", "cutout")
    result = train(cfg)
    assert result.step == 2 and result.reason == "finished"
    lines = (tmp_path / "prior" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all('"r1"' in line and "NaN" not in line for line in lines)
