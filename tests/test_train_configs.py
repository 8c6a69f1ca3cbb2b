"""Every shipped training recipe loads and validates, and the reference-selection recipe trains only the selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from psp_hub import PSPGAN
from psp_hub.training.config import TrainConfig
from psp_hub.training.stages import make_stage

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "train" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_recipe_loads_and_validates(path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.stage in ("prior", "pspgan") and cfg.batch_size > 0 and cfg.max_steps > 0
    assert cfg.model.out_size in (32, 64, 128, 256, 512)


def test_the_selection_recipe_trains_only_the_selection_of_the_bundled_model(tmp_path):
    """psp-128-selection.yaml on the bundled model: every generator weight but the selection head is frozen, and
    step 0 restores as the bundled model does (its selection when it has one, else a zero-initialised, uniform one)."""
    cfg = TrainConfig.from_yaml(
        ROOT / "train" / "configs" / "psp-128-selection.yaml",
        [f"output_dir={tmp_path / 'run'}", "mixed_precision='no'", "tracker=none"],
    )
    stage = make_stage(cfg, Accelerator(cpu=True))
    model = stage.raw_generator
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("selection.") for n in trainable)
    bundled = PSPGAN.from_pretrained(str(ROOT / "checkpoints" / "psp-gan-128")).eval()
    model.eval()
    gen = torch.Generator().manual_seed(0)
    lq, refs = torch.rand(1, 3, 128, 128, generator=gen) * 2 - 1, torch.rand(1, 2, 3, 128, 128, generator=gen) * 2 - 1
    with torch.no_grad():
        ours, theirs = model(lq, refs, return_contributions=True), bundled(lq, refs, return_contributions=True)
    assert torch.allclose(ours.image, theirs.image, atol=1e-5)
    expected = theirs.contributions if bundled.config.reference_selection else torch.full((1, 2), 0.5)
    assert torch.allclose(ours.contributions, expected, atol=1e-6)
