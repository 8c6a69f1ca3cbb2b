"""Reference selection: learned per-reference weights (models/selection.py), and training them with distractors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.nn import functional as F

from psp_hub import PSPGAN, default_model_dir, tiny_config
from psp_hub.common.config import ConfigError
from psp_hub.data import build_train_dataloader
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.models import PSPGANConfig
from psp_hub.training import TrainConfig
from psp_hub.training.batches import batch_to_device
from psp_hub.training.config import LossWeights
from psp_hub.training.distractors import DISTRACTOR_KEY, add_distractors, reference_selection_loss, step_generator
from psp_hub.training.objectives import PSPGANObjective
from psp_hub.training.stages import make_stage
from psp_hub.training.warm_start import grow_pspgan, init_pspgan
from tests.model_helpers import make_live, random_batch, random_selection

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny-cpu.yaml"
DIRECTIONS = ["reference_query", "input_query"]
MASK = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)  # full, one empty slot, no references


def _pair(direction: str, seed: int = 2) -> tuple[PSPGAN, PSPGAN]:
    """A live model without selection and the same weights with an untrained selection."""
    torch.manual_seed(0)
    off = make_live(PSPGAN(tiny_config(64, fusion_direction=direction)), seed=seed).eval()
    on = PSPGAN(tiny_config(64, fusion_direction=direction, reference_selection=True)).eval()
    result = on.load_state_dict(off.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("selection.") for k in result.missing_keys)
    return off, on


def test_config_round_trips_and_configs_without_the_key_load_as_before():
    cfg = tiny_config(64, reference_selection=True)
    assert PSPGANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    shipped = json.loads((default_model_dir() / "config.json").read_text())
    assert PSPGANConfig.from_dict(shipped).reference_selection is True  # the bundled model has it
    legacy = {k: v for k, v in shipped.items() if k != "reference_selection"}  # every config.json written before
    assert PSPGANConfig.from_dict(legacy).reference_selection is False
    with pytest.raises(ConfigError, match="reference_selection"):
        PSPGANConfig.from_dict({**shipped, "reference_selection": "yes"})
    assert not any(k.startswith("selection.") for k in PSPGAN(tiny_config(64)).state_dict())


@pytest.mark.parametrize("direction", DIRECTIONS)
@torch.no_grad()
def test_an_untrained_selection_computes_exactly_the_model_without_it(direction):
    off, on = _pair(direction)
    lq, refs = random_batch(64, 3, 3, seed=5)
    for strength in (1.0, 0.5):
        plain = off(lq, refs, MASK, strength=strength)
        gated = on(lq, refs, MASK, strength=strength, return_contributions=True)
        assert torch.equal(plain.image, gated.image)
    assert torch.equal(gated.reference_weights, torch.tensor([[1 / 3] * 3, [0.5, 0, 0.5], [0, 0, 0]]))
    assert plain.reference_weights is None
    assert torch.equal(off(lq).image, on(lq).image) and on(lq).reference_weights.shape == (3, 0)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_weights_are_a_distribution_over_valid_references_that_follows_them(direction):
    _, model = _pair(direction)
    random_selection(model)
    lq, refs = random_batch(64, 3, 3, seed=5)
    out = model(lq, refs, MASK, return_contributions=True)
    w = out.reference_weights
    assert w.requires_grad  # a loss can train it
    assert torch.equal(out.contributions, w.detach())  # the reported share is the weight the model used
    assert torch.allclose(w[:2].sum(dim=1), torch.ones(2), atol=1e-6) and (w >= 0).all()
    assert w[1, 1] == 0 and (w[2] == 0).all()
    assert (w[0] - 1 / 3).abs().max() > 0.05  # a trained selection does prefer some references
    perm = [2, 0, 1]
    with torch.no_grad():
        swapped = model(lq, refs[:, perm], MASK[:, perm])
    assert torch.allclose(swapped.reference_weights, w.detach()[:, perm], atol=1e-6)
    assert torch.allclose(swapped.image, out.image.detach(), atol=1e-5)
    # the weights change the output: the same references mixed equally give another image
    with torch.no_grad():
        plain = PSPGAN(tiny_config(64, fusion_direction=direction)).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("selection.")})
        assert (plain(lq, refs, MASK).image - out.image).abs().max() > 1e-4


@torch.no_grad()
def test_the_cached_path_equals_the_uncached_one():
    _, model = _pair("reference_query")
    random_selection(model)
    lq, refs = random_batch(64, 3, 3, seed=5)
    direct = model(lq, refs, MASK, return_contributions=True)
    cache = model.encode_references(refs, MASK)
    cached = model.restore(lq, cache, return_contributions=True)
    assert torch.equal(direct.image, cached.image) and torch.equal(direct.contributions, cached.contributions)
    one = model.encode_references(refs[:1])  # one person's cache, broadcast over a batch of their photos
    shared = model.restore(lq, one, return_contributions=True)
    assert torch.equal(shared.contributions[0], direct.contributions[0])
    assert torch.allclose(shared.contributions[1], model(lq[1:2], refs[:1]).reference_weights[0], atol=1e-5)
    plain = PSPGAN(tiny_config(64)).encode_references(refs)
    with pytest.raises(ValueError, match="without reference selection"):
        model.restore(lq, plain)


def _smooth(n: int, gen: torch.Generator) -> torch.Tensor:
    """Random faces stand-ins with structure at the bottleneck's scale: 4 x 4 colours upsampled to 64 px."""
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=gen) * 2 - 1, size=(64, 64), mode="bilinear")


def _toy_batch(gen: torch.Generator, b: int = 8, k: int = 3):
    """Inputs; references that are noisy copies of the input's target but for one stranger; the stranger mask."""
    target = _smooth(b, gen)
    own = target[:, None] + 0.1 * torch.randn(b, k, 3, 64, 64, generator=gen)
    distractor = F.one_hot(torch.randint(0, k, (b,), generator=gen), k).to(torch.bool)
    refs = torch.where(distractor[..., None, None, None], _smooth(b, gen)[:, None], own)
    lq = F.interpolate(target, size=(32, 32), mode="bilinear", antialias=True)
    return lq, refs, distractor


def test_a_tiny_model_learns_to_weigh_its_own_references_above_a_stranger():
    """Only the selection loss, 40 steps from scratch. Measured (seed 0): the loss first stays near -log(2/3)
    (random encoders barely relate input and reference features), then falls; held-out own share: mean 0.908, 7 of 8
    samples above 0.95."""
    torch.manual_seed(0)
    model = PSPGAN(tiny_config(64, reference_selection=True)).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    gen, mask = torch.Generator().manual_seed(0), torch.ones(8, 3, dtype=torch.bool)
    for _ in range(40):
        lq, refs, distractor = _toy_batch(gen)
        loss = reference_selection_loss(model(lq, refs).reference_weights, mask, distractor)
        opt.zero_grad()
        loss.backward()
        opt.step()
    lq, refs, distractor = _toy_batch(torch.Generator().manual_seed(99))
    with torch.no_grad():
        own = (model.eval()(lq, refs, return_contributions=True).contributions * ~distractor).sum(dim=1)
    assert own.mean() > 0.8, own


def test_distractors_replace_one_own_reference_with_another_persons():
    gen = torch.Generator().manual_seed(0)
    b, k = 6, 3
    refs = torch.arange(b * k, dtype=torch.float32).view(b, k, 1, 1, 1).expand(b, k, 3, 4, 4).clone()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 1, 1]], dtype=torch.bool)
    identity = ["a", "b", "c", "d", "e", "e"]  # the last two are one person: never each other's distractor
    batch = {"refs": refs, "ref_mask": mask, "identity": identity, "ref_is_augmented": mask.clone()}
    out = add_distractors(batch, 1.0, gen)
    d = out[DISTRACTOR_KEY]
    assert d.tolist()[2:4] == [[False] * 3] * 2  # fewer than two references: kept
    assert d[[0, 1, 4, 5]].sum(dim=1).tolist() == [1, 1, 1, 1] and not (d & ~mask).any()
    for i, slot in d.nonzero().tolist():
        lender, lent_slot = divmod(int(out["refs"][i, slot, 0, 0, 0]), k)
        assert mask[lender, lent_slot] and identity[lender] != identity[i]
    assert torch.equal(out["refs"][~d], refs[~d]) and not out["ref_is_augmented"][d].any()
    assert torch.equal(batch["refs"], refs)  # the input batch is left alone
    again = add_distractors(batch, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again["refs"], out["refs"])
    assert add_distractors(out, 1.0, gen) is out  # once per batch
    none = add_distractors(batch, 0.0, gen)
    assert not none[DISTRACTOR_KEY].any() and none["refs"] is refs
    some = [add_distractors(batch, 0.5, step_generator(0, s, "cpu"))[DISTRACTOR_KEY].any(1) for s in range(40)]
    rate = torch.stack(some)[:, [0, 1, 4, 5]].float().mean()
    assert 0.35 < rate < 0.65, rate  # 160 draws of probability 0.5


def test_selection_loss_is_minus_log_own_weight_over_samples_with_a_distractor():
    w = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    distractor = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    loss = reference_selection_loss(w, mask, distractor)
    expected = -(torch.log(torch.tensor(0.75)) + torch.log(torch.tensor(0.8))) / 2
    assert torch.allclose(loss, expected)
    loss.backward()
    assert w.grad[2].abs().sum() == 0 and w.grad[0, 0] < 0
    zero = reference_selection_loss(w, mask, torch.zeros_like(distractor))
    assert zero == 0 and zero.requires_grad


def test_the_objective_logs_the_term_and_refuses_what_would_train_without_it():
    off = dict.fromkeys(("l1", "perceptual", "identity", "unet", "gan", "component_gan", "component_style"), 0.0)
    objective = PSPGANObjective(LossWeights(**off, reference_selection=2.0), 64)
    _, model = _pair("reference_query")
    lq, refs = random_batch(64, 2, 3, seed=5)
    out = model(lq, refs)
    distractor = torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    batch = {"target": lq, "ref_mask": torch.ones(2, 3, dtype=torch.bool), DISTRACTOR_KEY: distractor}
    losses = objective.generator_losses(out, batch, discs=None, use_unet=False)
    assert set(losses) == {"reference_selection"}
    assert torch.allclose(losses["reference_selection"], 2 * torch.log(torch.tensor(1.5)))  # -log(2/3)
    with pytest.raises(ValueError, match="add_distractors"):
        objective.generator_losses(out, {"target": lq, "ref_mask": batch["ref_mask"]}, None, False)
    with pytest.raises(ValueError, match="reference_selection: true"):
        objective.generator_losses(PSPGAN(tiny_config(64))(lq, refs), batch, None, False)


def test_train_config_checks_the_selection_options():
    on = ["model.reference_selection=true", "distractor_references=0.5", "losses.reference_selection=1.0"]
    cfg = TrainConfig.from_yaml(TINY, on)
    assert cfg.model.reference_selection and cfg.distractor_references == 0.5 and cfg.losses.reference_selection == 1
    assert TrainConfig.from_yaml(TINY).distractor_references == 0 and LossWeights().reference_selection == 0
    with pytest.raises(ConfigError, match="needs model.reference_selection"):
        TrainConfig.from_yaml(TINY, on[1:])
    with pytest.raises(ConfigError, match="needs distractor_references"):
        TrainConfig.from_yaml(TINY, [on[0], on[2]])
    with pytest.raises(ConfigError, match="probability"):
        TrainConfig.from_yaml(TINY, ["distractor_references=1.5"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("selection-data"))


def test_two_real_training_steps_with_distractors_train_the_selection(dataset, tmp_path):
    """The tiny training config with selection, distractors and its loss on: the step logs the term and the
    selection's zero-initialised query moves. The step itself swaps in the distractors."""
    cfg = TrainConfig.from_yaml(
        TINY,
        [
            f"data.path={dataset}",
            f"output_dir={tmp_path / 'run'}",
            "data.min_references=2",
            "model.reference_selection=true",
            "distractor_references=1.0",
            "losses.reference_selection=1.0",
        ],
    )
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    batch = batch_to_device(next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size))), "cpu")
    logs = []
    for step in range(2):  # the raw batch: the step adds the distractors (the objective refuses a batch without)
        logs.append(stage.step(batch, step))
    for log in logs:
        assert "reference_selection" in log and 0 < float(log["reference_selection"]) < 10
        assert all(torch.isfinite(v) for v in log.values())
    assert stage.raw_generator.selection.q.weight.abs().sum() > 0


def test_a_selection_model_grown_from_one_without_starts_with_its_output(tmp_path):
    """What init_from does for a grown model (warm_start.grow_pspgan): only the selection's tensors are new."""
    off, _ = _pair("reference_query")
    on = PSPGAN(tiny_config(64, reference_selection=True)).eval()
    report = grow_pspgan(on, off, "off")
    assert sorted(report.missing) == sorted(k for k in on.state_dict() if k.startswith("selection."))
    assert report.missing and not report.shape_mismatch and not report.unused
    lq, refs = random_batch(64, 3, 3, seed=5)
    with torch.no_grad():
        assert torch.equal(on(lq, refs, MASK).image, off(lq, refs, MASK).image)


def test_init_from_a_model_without_selection(tmp_path):
    off, _ = _pair("reference_query")
    off.save_pretrained(tmp_path / "off")
    on = PSPGAN(tiny_config(64, reference_selection=True))
    report = init_pspgan(on, str(tmp_path / "off"))
    assert sorted(report.missing) == sorted(k for k in on.state_dict() if k.startswith("selection."))
    lq, refs = random_batch(64, 3, 3, seed=5)
    with torch.no_grad():
        assert torch.equal(on.eval()(lq, refs, MASK).image, off(lq, refs, MASK).image)
