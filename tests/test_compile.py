"""Compiled training steps compute eager's losses and gradients (of the parameters' own shapes), and every compiled
training region is built without inductor's mix-order reduction (its wrong-shape gradients broke the prior-256
backward on the device's torch 2.11; the pass is Triton-only, so CPU checks that it is switched off).

The whole-step tests compile with aot_eager: AOTAutograd (where the device's invalid-gradient check fired) without
inductor's C++ codegen, which took 724 s for one prior step on the busy 2-core machine; the inductor graphs are
checked on the failing layer, and whole steps under inductor on the device (train/device/compile_check.sh)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch._functorch import config as functorch_config
from torch._inductor import config as inductor_config
from torch._inductor import scheduler as inductor_scheduler

from psp_hub.data import build_train_dataloader
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.models.stylegan2 import StyleConv, StyleGAN2Generator, draw_mixing_index
from psp_hub.training import TrainConfig, stages
from psp_hub.training.compilation import (
    MIX_ORDER_ENV,
    compile_in_place,
    compiled_view,
    training_compile_options,
    watch_compiles,
)
from psp_hub.training.stages import make_stage

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("compile-data"))


@pytest.fixture
def fresh_dynamo():
    """A fresh compile cache, and inductor's random numbers drawn as eager's (so noise injection matches)."""
    torch._dynamo.reset()
    with inductor_config.patch(fallback_random=True):
        yield
    torch._dynamo.reset()


@pytest.fixture
def bf16_accelerator(fresh_accelerator_state):
    """A bf16 Accelerator for this test only (accelerate's state is process-wide: forgotten before and after)."""
    return lambda: Accelerator(cpu=True, mixed_precision="bf16")


@pytest.fixture
def mix_order_seen(monkeypatch):
    """The mix-order setting each inductor graph (forward and backward alike) was scheduled under; the on-disk
    caches are off, so every graph is scheduled here rather than loaded from an earlier run."""
    seen: list[bool] = []
    init = inductor_scheduler.Scheduler.__init__

    def spy(self, *args, **kwargs):
        seen.append(inductor_config.triton.mix_order_reduction)
        init(self, *args, **kwargs)

    monkeypatch.setattr(inductor_scheduler.Scheduler, "__init__", spy)
    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
        yield seen


def _style_conv_grads(conv: torch.nn.Module, call, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> dict:
    """`conv`'s gradients through `call` (the layer itself or a compiled view of it)."""
    conv.zero_grad(set_to_none=True)
    call(x, style, noise).square().mean().backward()
    return {n: p.grad.clone() for n, p in conv.named_parameters()}


def test_compile_options_are_static_and_turn_mix_order_off_for_inductor_only(monkeypatch):
    monkeypatch.delenv(MIX_ORDER_ENV, raising=False)
    assert training_compile_options(backend="inductor")["options"] == {"triton.mix_order_reduction": False}
    assert training_compile_options()["options"] == {"triton.mix_order_reduction": False}
    assert training_compile_options(backend="aot_eager") == {"backend": "aot_eager", "dynamic": False}
    assert training_compile_options(backend="eager", dynamic=True)["dynamic"] is True  # static unless asked
    # torch.compile takes a mode or options: the mode's own options come along
    merged = training_compile_options(mode="max-autotune-no-cudagraphs")
    assert "mode" not in merged and merged["options"]["max_autotune"] is True
    assert merged["options"]["triton.mix_order_reduction"] is False
    monkeypatch.setenv(MIX_ORDER_ENV, "1")  # set by hand: inductor's own reading of it stands
    assert training_compile_options(backend="inductor") == {"backend": "inductor", "dynamic": False}


def test_compiled_style_conv_has_eager_gradients_and_no_mix_order(fresh_dynamo, mix_order_seen, monkeypatch):
    """The layer of the device failure (bias [1, C, 1, 1] beside noise injection), channels-last as in training."""
    monkeypatch.delenv(MIX_ORDER_ENV, raising=False)
    torch.manual_seed(0)
    conv = StyleConv(8, 8, 16, upsample=True)
    with torch.no_grad():
        conv.weight.fill_(0.3)
        conv.bias.normal_()
        conv.bias.data = conv.bias.data.contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    style, noise = torch.randn(4, 16), torch.randn(4, 1, 16, 16)
    eager = _style_conv_grads(conv, conv, x, style, noise)
    compiled = _style_conv_grads(conv, compiled_view(conv, backend="inductor"), x, style, noise)
    assert len(mix_order_seen) >= 2 and not any(mix_order_seen), mix_order_seen  # forward and backward graphs
    for name, grad in eager.items():
        assert compiled[name].shape == grad.shape, name
        torch.testing.assert_close(compiled[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def _prior_stage(dataset, tmp_path, compiled: bool, *overrides: str):
    cfg = TrainConfig.from_yaml(
        TINY,
        [
            f"data.path={dataset}",
            f"output_dir={tmp_path / f'prior-{compiled}'}",
            "stage=prior",
            "channels_last=true",
            f"compile={str(compiled).lower()}",
            "compile_backend=aot_eager",
            "data.max_references=0",
            "style_mixing_prob=1.0",  # the device failure was in the mixed-styles graph
            *overrides,
        ],
    )
    set_seed(0)
    return cfg, make_stage(cfg, Accelerator(cpu=True))


def _step_with_generator_grads(stage, batch, step: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """One training step's logs and the generator gradients its optimizer step saw."""
    grads: dict[str, torch.Tensor] = {}
    step_g = stage.opt_g.step

    def snapshot_then_step(*args, **kwargs):
        grads.update({n: p.grad.clone() for n, p in stage.raw_generator.named_parameters() if p.grad is not None})
        return step_g(*args, **kwargs)

    stage.opt_g.step = snapshot_then_step
    set_seed(0)
    return stage.step(batch, step), grads


@pytest.mark.parametrize("compile_losses", [False, True])
def test_compiled_prior_step_matches_eager(dataset, tmp_path, fresh_dynamo, monkeypatch, compile_losses):
    """A prior step (style mixing, channels-last) compiled against eager, its networks alone or with their losses
    (compile_losses): the same losses, and every generator gradient of its parameter's shape and eager's value (the
    device failure was a [C] gradient for a [1, C, 1, 1] bias)."""
    monkeypatch.delenv(MIX_ORDER_ENV, raising=False)
    results = {}
    batch = None
    for compiled in (False, True):
        extra = [f"compile_losses={str(compiled and compile_losses).lower()}"]
        cfg, stage = _prior_stage(dataset, tmp_path, compiled, *extra)
        batch = batch or next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
        results[compiled] = _step_with_generator_grads(stage, batch, 1)
    (eager_logs, eager_grads), (comp_logs, comp_grads) = results[False], results[True]
    assert set(comp_logs) == set(eager_logs) == {"g_gan", "d_loss"}
    for key, value in eager_logs.items():
        assert float(comp_logs[key]) == pytest.approx(float(value), rel=1e-3, abs=1e-5), key
    shapes = {n: tuple(p.shape) for n, p in stage.raw_generator.named_parameters()}
    assert {n: tuple(g.shape) for n, g in comp_grads.items()} == shapes
    for name, grad in eager_grads.items():
        torch.testing.assert_close(comp_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_compiled_r1_gives_the_eager_prior_step(dataset, tmp_path, fresh_dynamo, monkeypatch):
    """compile_r1: the prior's R1 step with the penalty compiled (torch.func.grad inside the graph) gives eager's
    losses, R1 and discriminator gradients (DiffAugment off: a graph draws its augmentations in an order of its own)."""
    from psp_hub.losses import gan

    results, batch = {}, None
    for compiled in (False, True):
        if compiled:  # the compiled run must not fall back to the eager penalty
            monkeypatch.setattr(gan, "r1_penalty", lambda *a: pytest.fail("eager R1 under compile_r1"))
        extra = ["losses.diffaug=''", f"compile_r1={str(compiled).lower()}"]
        cfg, stage = _prior_stage(dataset, tmp_path, compiled, *extra)
        batch = batch or next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
        grads: dict[str, torch.Tensor] = {}
        step_d = stage.opt_d.step

        def snapshot_then_step(*args, _grads=grads, _stage=stage, _step=step_d, **kwargs):
            _grads.update({n: p.grad.clone() for n, p in _stage.disc.named_parameters() if p.grad is not None})
            return _step(*args, **kwargs)

        stage.opt_d.step = snapshot_then_step
        set_seed(0)
        results[compiled] = ({k: float(v) for k, v in stage.step(batch, 0).items()}, grads)
    (eager_logs, eager_grads), (comp_logs, comp_grads) = results[False], results[True]
    assert set(comp_logs) == set(eager_logs) == {"g_gan", "r1", "d_loss"} and eager_logs["r1"] > 0
    for key, value in eager_logs.items():
        assert comp_logs[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    assert set(comp_grads) == set(eager_grads) and eager_grads
    for name, grad in eager_grads.items():
        torch.testing.assert_close(comp_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_compiled_pspgan_generator_step_matches_eager(dataset, tmp_path, fresh_dynamo, monkeypatch):
    """PSP-GAN's generator compiled in place (what `compile=true` does to it): the same restored image
    and gradients of the parameters' shapes, channels-last; its losses' networks are checked in test_training."""
    monkeypatch.delenv(MIX_ORDER_ENV, raising=False)
    cfg = TrainConfig.from_yaml(TINY, [f"data.path={dataset}", f"output_dir={tmp_path / 'psp'}", "channels_last=true"])
    batch = next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    model = stage.raw_generator
    results = []
    for compiled in (False, True):
        if compiled:
            compile_in_place(model, backend="aot_eager")
        model.zero_grad(set_to_none=True)
        set_seed(0)
        out = model(batch["lq"], batch["refs"], batch["ref_mask"]).image
        out.square().mean().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (eager_out, eager_grads), (comp_out, comp_grads) = results
    torch.testing.assert_close(comp_out, eager_out, rtol=1e-3, atol=1e-4)
    assert set(comp_grads) == set(eager_grads) and len(eager_grads) > 50
    for name, grad in eager_grads.items():
        assert comp_grads[name].shape == grad.shape, name
        torch.testing.assert_close(comp_grads[name], grad, rtol=1e-2, atol=1e-4, msg=name)


def _tiny_generator() -> StyleGAN2Generator:
    m = TrainConfig.from_yaml(TINY).model
    return StyleGAN2Generator(m.out_size, m.style_dim, m.n_mlp, m.channel_multiplier, m.narrow, m.max_channels)


def test_style_mixing_at_k_takes_layers_below_k_from_the_first_code(monkeypatch):
    """Mixing at k (a Python int or the 0-d tensor the prior step passes): W+ rows < k are the first code's, rows >= k
    the second's, the same codes as the concatenation used before; k = num_latent is the first code alone."""
    torch.manual_seed(0)
    g = _tiny_generator().eval()
    z = [torch.randn(3, g.style_dim) for _ in range(2)]
    w0, w1 = (g.style_mlp(zi).detach() for zi in z)
    seen: list[torch.Tensor] = []
    synthesis = g.synthesis

    def recorded(latents: torch.Tensor, **kwargs) -> torch.Tensor:
        seen.append(latents.detach())
        return synthesis(latents, **kwargs)

    monkeypatch.setattr(g, "synthesis", recorded)
    n = g.num_latent
    for k in (1, 5, n - 1, n):
        with torch.no_grad():
            by_int = g(z, randomize_noise=False, mixing_index=k)
            by_tensor = g(z, randomize_noise=False, mixing_index=torch.full((), k))
        torch.testing.assert_close(by_tensor, by_int, rtol=0, atol=0)
        for latents in seen[-2:]:
            assert latents.shape == (3, n, g.style_dim)
            assert torch.equal(latents[:, :k], w0.unsqueeze(1).expand(-1, k, -1)), k
            assert torch.equal(latents[:, k:], w1.unsqueeze(1).expand(-1, n - k, -1)), k
    with torch.no_grad():
        alone = g(z[0], randomize_noise=False)
    torch.testing.assert_close(by_int, alone, rtol=0, atol=0)  # the last k was num_latent


@pytest.mark.parametrize(("mixing_prob", "compile_losses"), [(0.9, False), (0.5, False), (0.9, True)])
def test_compiled_prior_step_compiles_nothing_after_its_first_step(
    tmp_path, fresh_dynamo, monkeypatch, mixing_prob, compile_losses
):
    """Style mixing on: every generator graph compiles in step 0, and steps 1-11 compile nothing, although they draw
    other crossovers and (both branches below) steps with and without mixing; the same with the losses compiled
    with the networks. Before the crossover became a tensor select, the same check counted 5 compilations in steps
    1-11 (prob 0.9)."""
    cfg = TrainConfig.from_yaml(
        TINY,
        [
            "tracker=none",
            f"output_dir={tmp_path / 'run'}",
            "stage=prior",
            "compile=true",
            "compile_backend=aot_eager",
            "channels_last=true",
            f"style_mixing_prob={mixing_prob}",
            f"compile_losses={str(compile_losses).lower()}",
        ],
    )
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    drawn: list[int] = []

    def recorded(num_latent: int, prob: float) -> int:
        drawn.append(draw_mixing_index(num_latent, prob))
        return drawn[-1]

    monkeypatch.setattr(stages, "draw_mixing_index", recorded)
    real = torch.rand(cfg.batch_size, 3, cfg.model.out_size, cfg.model.out_size) * 2 - 1
    batch = {"target": real.contiguous(memory_format=torch.channels_last)}
    with watch_compiles() as first:
        stage.step(batch, 0)
    with watch_compiles() as later:
        for step in range(1, 12):
            stage.step(batch, step)
    n = stage.raw_generator.num_latent
    assert n in drawn[1:] and len({k for k in drawn[1:] if k < n}) >= 2, drawn  # both branches, several crossovers
    assert first.count >= 4  # G forward and backward, D's two grad states
    assert later.count == 0, later.events


@pytest.mark.parametrize("compiled", [False, True])
def test_unet_term_ends_without_a_recompile_when_compiled(dataset, tmp_path, fresh_dynamo, compiled):
    """At `unet_until` (step 2 of 32 here) the U-Net term stops counting. Eager drops its RGB heads there; compiled,
    they run to the end with the term times 0, so the generator's graph stays the one step 0 compiled (it compiled
    a second generator, forward and backward, there before: minutes on the device) and no step after 0 compiles."""
    cfg = TrainConfig.from_yaml(
        TINY,
        [
            f"data.path={dataset}",
            f"output_dir={tmp_path / 'psp'}",
            "tracker=none",
            "max_steps=32",
            "losses.unet_until=0.0625",
            f"compile={str(compiled).lower()}",
            "compile_backend=aot_eager",
        ],
    )
    batch = next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    unet, compiles = [], []
    for step in range(4):
        with watch_compiles() as tally:
            logs = stage.step(batch, step)
        compiles.append(tally.count)
        unet.append(float(logs["unet"]) if "unet" in logs else None)
    assert unet[0] > 0 and unet[1] > 0, unet
    assert unet[2:] == ([0.0, 0.0] if compiled else [None, None]), unet
    if compiled:
        assert compiles[0] >= 4 and compiles[1:] == [0, 0, 0], compiles
    else:
        assert compiles == [0, 0, 0, 0], compiles


def _mixed_resolution_config(dataset, tmp_path, compile_backend: str | None, *overrides: str) -> TrainConfig:
    """The psp-256 recipe (mixed resolution, DiffAugment, frozen modules, reference selection with distractors) on the
    tiny network under bf16 autocast, as the device runs it: the bf16 generator output meets the discriminators' fp32
    reals, and at the two native levels (32 and 64 px here) the perceptual net sees two sizes."""
    import yaml

    tiny_model = yaml.safe_load(TINY.read_text())["model"]
    return TrainConfig.from_yaml(
        Path(__file__).resolve().parents[1] / "train" / "configs" / "psp-256.yaml",
        [f"model.{k}={json.dumps(v)}" for k, v in tiny_model.items()]
        + [
            "model.reference_size=32",
            "data.out_size=64",
            "data.max_references=2",
            f"data.path={dataset}",
            f"data.extra_path={dataset}",
            "data.sharp_threshold=118",  # the tiny set's median sharpness: both native levels occur
            f"output_dir={tmp_path / f'psp-{compile_backend}'}",
            "batch_size=2",
            "max_steps=100",  # the U-Net term stays on (to step 6) through the steps below
            "mixed_precision=bf16",
            "d_narrow=0.0625",
            "component_d_channels=8",
            "init_from=null",
            "prior_path=null",
            "tracker=none",
            f"compile={str(compile_backend is not None).lower()}",
            f"compile_backend={compile_backend or 'inductor'}",
            *overrides,
        ],
    )


def _eager_and_census_steps(dataset, tmp_path, bf16_accelerator, shared=(), compiled=()):
    """Three steps of the tiny psp-256 recipe (eye/mouth terms on from step 0, so every discriminator is in it) on
    the same batches, eager and compiled with the census backend (`shared` overrides for both, `compiled` for the
    second): each run's logs, the compilations of each step (eager's three first) and the census."""
    from psp_hub.data import build_train_batches
    from psp_hub.training.batches import batch_to_device
    from psp_hub.training.compile_census import CENSUS, register_census_backend

    census = register_census_backend()
    extra = ("losses.component_gan=1.0", "losses.component_style=200.0", "losses.component_from=0", *shared)
    cfg = _mixed_resolution_config(dataset, tmp_path, None, *extra)
    batches = build_train_batches(cfg.data, batch_size=cfg.batch_size, device=torch.device("cpu"))
    steps = [batch_to_device(next(batches), "cpu", cfg.channels_last) for _ in range(3)]
    assert {int(n) for b in steps for n in b["native_px"]} == {32, 64}
    logs: dict[str | None, list[dict[str, float]]] = {}
    counts = []
    CENSUS.graphs.clear()
    for backend in (None, census):
        set_seed(0)
        cfg = _mixed_resolution_config(dataset, tmp_path, backend, *extra, *(compiled if backend else ()))
        stage = make_stage(cfg, bf16_accelerator())
        logs[backend] = []
        for i, batch in enumerate(steps):
            set_seed(i)
            with watch_compiles() as tally:
                logs[backend].append({k: float(v) for k, v in stage.step(batch, i).items()})
            counts.append(tally.count)
    return logs[None], logs[census], counts, CENSUS


def _assert_same_losses(eager_logs, compiled_logs):
    for i, (e, c) in enumerate(zip(eager_logs, compiled_logs)):
        assert set(e) == set(c) and len(e) >= 5
        for key in e:
            assert c[key] == pytest.approx(e[key], rel=2e-2, abs=1e-3), (i, key)


def test_compiled_mixed_resolution_step_is_static_compiles_only_in_step_0_and_matches_eager(
    dataset, tmp_path, fresh_dynamo, bf16_accelerator
):
    """The compiled psp-256 step on the tiny network: every graph compiles in step 0 with static shapes, steps 1-2
    (other samples native at each level, other distractors) compile nothing, and the losses are eager's. Before static
    shapes and one dtype for the discriminators' reals and fakes, the same census counted 38 graphs, 15 of them with
    symbolic sizes (the perceptual net at 32 px after 64 px, a component discriminator after another) and a second
    D-step graph per discriminator for the bf16 fakes."""
    eager_logs, compiled_logs, counts, census = _eager_and_census_steps(dataset, tmp_path, bf16_accelerator)
    assert counts[:3] == [0, 0, 0] and counts[3] >= 20 and counts[4:] == [0, 0], counts
    assert not census.dynamic, census.dynamic
    # G, VGG at two sizes with and without grad, the identity net with and without; the global D once in the G step
    # and once in the D step, each component D the same plus its no-grad style features; backward graphs: 30
    assert len(census.graphs) == 30, [(g.compile_id, g.kind, g.ops) for g in census.graphs]
    assert {"reference_selection", "component_gan", "d_components"} <= set(compiled_logs[0])
    _assert_same_losses(eager_logs, compiled_logs)


@pytest.mark.parametrize(
    ("diffaug", "compile_r1"), [("color,translation,cutout", False), ("", False), ("", True)], ids=["diffaug", "", "r1"]
)
def test_compiled_losses_are_two_graphs_static_from_step_0_with_eager_losses(
    dataset, tmp_path, fresh_dynamo, bf16_accelerator, diffaug, compile_r1
):
    """compile_losses=true on the same recipe: the generator's forward with all its terms (VGG, identity warp and
    net, DiffAugment, every discriminator, crops, grams) is one graph and the discriminators' logistic terms another,
    each with its backward, all compiled in step 0 with static shapes and no graph break; steps 1-2 compile nothing.
    Without DiffAugment every loss (R1 eager, in step 0) is eager's; with it, the terms before the discriminators
    are, while a graph draws the augmentations in an order of its own (d_global 1.47 against eager's 1.74 at step 0
    here), so the adversarial terms are other draws of the same augmentations, as training expects. With compile_r1
    the R1 step's penalty is a third graph (its backward the discriminator's second derivative), with eager's R1."""
    compiled = ["compile_losses=true", f"compile_r1={str(compile_r1).lower()}"]
    eager_logs, compiled_logs, counts, census = _eager_and_census_steps(
        dataset, tmp_path, bf16_accelerator, shared=[f"losses.diffaug={diffaug!r}"], compiled=compiled
    )
    assert counts[:3] == [0, 0, 0] and counts[3] > 0 and counts[4:] == [0, 0], counts
    assert not census.dynamic, census.dynamic
    graphs = 6 if compile_r1 else 4
    assert len(census.graphs) == graphs, [(g.compile_id, g.kind, g.ops) for g in census.graphs]
    assert "r1" in compiled_logs[0] and "r1" not in compiled_logs[1]
    if not diffaug:
        _assert_same_losses(eager_logs, compiled_logs)
        return
    drawn = {"gan", "component_gan", "component_style", "d_global", "d_components", "r1", "g_total"}
    _assert_same_losses(
        [{k: v for k, v in e.items() if k not in drawn} for e in eager_logs],
        [{k: v for k, v in c.items() if k not in drawn} for c in compiled_logs],
    )
    assert all(math.isfinite(v) for c in compiled_logs for v in c.values())


@pytest.mark.parametrize("key", ["compile_losses", "compile_r1"])
def test_compiling_the_losses_needs_compile(key):
    from psp_hub.common.config import ConfigError

    with pytest.raises(ConfigError, match=f"{key} needs compile: true"):
        TrainConfig.from_yaml(TINY, [f"{key}=true"])


def test_compile_mode_reaches_every_compiled_module(dataset, tmp_path, fresh_dynamo, bf16_accelerator, monkeypatch):
    """compile_mode=reduce-overhead: the generator, the loss nets and every discriminator of the psp-256 recipe are
    compiled with inductor's CUDA graphs on (built only: compiling them with inductor takes many minutes here)."""
    from psp_hub.training import compilation

    seen: list[dict] = []

    def recording(**options):
        seen.append(training_compile_options(**options))
        return seen[-1]

    monkeypatch.setattr(compilation, "training_compile_options", recording)
    cfg = _mixed_resolution_config(dataset, tmp_path, "inductor", "compile_mode=reduce-overhead")
    assert cfg.compile_options == {"backend": "inductor", "mode": "reduce-overhead"}
    make_stage(cfg, bf16_accelerator())
    # generator, VGG, identity net, global D, left eye, right eye and mouth Ds
    assert len(seen) == 7 and all(o["options"]["triton.cudagraphs"] is True for o in seen), seen


def test_each_step_under_cuda_graphs_marks_a_new_step(dataset, tmp_path, fresh_dynamo, monkeypatch):
    """With compile_mode=reduce-overhead every training step tells the graph trees that a new step began (their
    outputs of the step before may then be overwritten); the default mode marks nothing (a prior step, aot_eager)."""
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    cfg, stage = _prior_stage(dataset, tmp_path, True, "compile_mode=reduce-overhead")
    batch = next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
    for step in (1, 2):
        stage.step(batch, step)
    assert len(marks) == 2
    cfg, stage = _prior_stage(dataset, tmp_path, True)
    stage.step(batch, 1)
    assert len(marks) == 2 and cfg.compile_options == {"backend": "aot_eager"}
