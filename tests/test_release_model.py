"""The bundled default model: loads strictly, restores held-out faces on CPU, and beats bicubic where the metrics say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from psp_hub import PSPGAN, default_model_dir
from psp_hub.common import image_to_tensor, tensor_to_image
from psp_hub.data import DegradationConfig, degrade, sample_degradation
from psp_hub.evaluation import bicubic_baseline
from psp_hub.metrics import LPIPS, DlibIdentity

FIXTURES = Path(__file__).parent / "fixtures" / "release_faces"


@pytest.fixture(scope="module")
def model():
    return PSPGAN.from_pretrained(str(default_model_dir())).eval()


@pytest.fixture(scope="module")
def people(model):
    """Targets, their severe (x8) degradations and three references each, at the model's size."""
    size = model.config.out_size
    index = json.loads((FIXTURES / "index.json").read_text())
    load = lambda i: np.asarray(Image.open(FIXTURES / f"{i}.webp").convert("RGB").resize((size, size), Image.LANCZOS))
    targets = [load(p["target"]) for p in index]
    rng = np.random.default_rng(0)
    params = sample_degradation(DegradationConfig.severe(), rng, size)
    lq = [(degrade(t, params, rng) * 255).round().astype(np.uint8) for t in targets]
    refs = torch.stack([image_to_tensor([load(r) for r in p["references"]]) for p in index])
    return image_to_tensor(targets), image_to_tensor(lq), refs, params.scale


def test_bundled_model_is_trained_small_and_loads_strictly(model):
    folder = default_model_dir()
    card = (folder / "README.md").read_text()
    assert "Status: untrained" not in card and "pipeline_tag: image-to-image" in card
    assert (folder / "model.safetensors").stat().st_size < 60 * 2**20
    assert model.config.out_size == 256  # the 256 px model since round 8 of the release campaign


@torch.no_grad()
def test_restores_held_out_faces_with_and_without_references(model, people):
    target, lq, refs, _ = people
    mask = torch.ones(refs.shape[:2], dtype=torch.bool)
    blind = model(lq, None, None).image
    personal = model(lq, refs, mask).image
    assert blind.shape == personal.shape == target.shape
    # bounded, not clamped (the pipeline clamps): the 128 px model stayed within 1.5; the 256 px one reached 2.26 on
    # these faces in round 8 (a few highlight pixels of its fresh 256 px to-RGB layer), 1.39 now
    assert torch.isfinite(personal).all() and personal.abs().max() <= 3.0
    assert not torch.allclose(blind, personal, atol=1e-3)  # the references change the result


@torch.no_grad()
def test_own_references_bring_the_person_back(model, people):
    """The paper's claim on the shipped held-out faces (severe x8): the person's own three references bring the
    output closer to the target (dlib, a network training never used) than no references or another person's."""
    target, lq, refs, _ = people
    mask = torch.ones(refs.shape[:2], dtype=torch.bool)
    dlib = DlibIdentity()
    distance = lambda out: float(dlib.distance(list(tensor_to_image(out.image)), list(tensor_to_image(target))).mean())
    own = distance(model(lq, refs, mask))
    blind = distance(model(lq, None, None))
    other = distance(model(lq, refs.roll(1, dims=0), mask))  # each face gets the next person's references
    # measured: the 256 px model 0.467 / 0.512 / 0.644 (own / none / other; round 9's weights 0.475 / 0.514 / 0.643),
    # on these 128 px faces upsampled to its size; the 128 px model 0.544 / 0.634 / 0.744; the first bundled model,
    # which ignored references, 0.640 / 0.661 / 0.668 (the margin over another person's references rejects it)
    assert own < blind - 0.03 and own < other - 0.05, {"own": own, "blind": blind, "other": other}


@torch.no_grad()
def test_beats_bicubic_on_identity_and_perception(model, people):
    """On the shipped held-out faces (severe x8): closer to the target than bicubic for dlib and LPIPS."""
    target, lq, refs, scale = people
    mask = torch.ones(refs.shape[:2], dtype=torch.bool)
    restored = model(lq, refs, mask).image.clamp(-1, 1)
    bicubic = bicubic_baseline(lq, torch.full((lq.shape[0],), scale))
    dlib = DlibIdentity()
    d_model = dlib.distance(list(tensor_to_image(restored)), list(tensor_to_image(target))).mean()
    d_bicubic = dlib.distance(list(tensor_to_image(bicubic)), list(tensor_to_image(target))).mean()
    lpips = LPIPS.from_shared()
    l_model, l_bicubic = lpips(restored, target).mean(), lpips(bicubic, target).mean()
    assert d_model < d_bicubic, (d_model, d_bicubic)
    assert l_model < l_bicubic, (l_model, l_bicubic)
