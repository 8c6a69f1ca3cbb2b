"""The trainer on a tiny config with every loss on: steps run, a fixed batch is overfit, resume is exact, export loads."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from psp_hub.data import boost_start_iteration, build_train_dataloader, phase_position
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.models import PSPGAN, StyleGAN2Generator
from psp_hub.training import OptimConfig, TrainConfig, train
from psp_hub.training.batches import batch_to_device
from psp_hub.training.checkpoint import latest_checkpoint
from psp_hub.training.config import LossWeights
from psp_hub.training.objectives import PSPGANObjective
from psp_hub.training.scaling import scaled_for_batch
from psp_hub.training.schedule import ema_weights, make_ema
from psp_hub.training.stages import PRIOR_FILE, make_stage
from psp_hub.training.trainer import _Timing, phase_for
from psp_hub.training.warm_start import load_matching, prior_state_dict

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train" / "configs" / "tiny-cpu.yaml"
GENERATOR_TERMS = {"l1", "perceptual", "identity", "unet", "gan", "component_gan", "component_style"}
DISCRIMINATOR_TERMS = {"d_global", "d_components", "r1"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("train-data"))


def tiny(dataset, out: Path, *overrides: str) -> TrainConfig:
    return TrainConfig.from_yaml(TINY, [f"data.path={dataset}", f"output_dir={out}", *overrides])


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar the run logged to TensorBoard, by tag."""
    out: dict[str, list[float]] = {}
    for events in run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out


def test_a_few_steps_with_every_loss_log_checkpoint_validate_and_export(dataset, tmp_path):
    cfg = tiny(dataset, tmp_path / "run")
    result = train(cfg)
    assert result.step == cfg.max_steps and result.reason == "finished"
    logged = scalars(tmp_path / "run")
    assert GENERATOR_TERMS | DISCRIMINATOR_TERMS | {"lr", "g_total"} <= set(logged), sorted(logged)
    assert all(torch.isfinite(torch.tensor(v)).all() for v in logged.values())
    for metric in ("val/psnr", "val/ssim", "val/lpips", "val/identity"):
        assert len(logged[metric]) == cfg.max_steps // cfg.validate_every
    # the paper's step decays, scaled to 6 steps: 2e-3, then halved at 5 and 6
    assert logged["lr"][0] == pytest.approx(2e-3) and logged["lr"][-1] == pytest.approx(5e-4)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("*.png")) == [
        "step_0000003.png",
        "step_0000006.png",
    ]
    assert latest_checkpoint(tmp_path / "run").name == f"checkpoint-{cfg.max_steps}"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in result.export.iterdir()}
    assert "Status: untrained" not in (result.export / "README.md").read_text()


def test_generator_loss_falls_when_overfitting_one_batch(dataset, tmp_path):
    cfg = tiny(dataset, tmp_path / "run", "max_steps=1000", "data.min_references=2")
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    batch = next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
    history = [stage.step(batch, i) for i in range(30)]
    assert GENERATOR_TERMS <= set(history[0])
    recon = [float(h["l1"] + h["perceptual"] + h["identity"]) for h in history]
    total = [float(h["g_total"]) for h in history]
    # the last ten steps' mean, not three: the GAN terms make single steps swing around a steady fall (30.3 -> ~25.5
    # in 30 steps here; one rounding-level change of the layers moved a discriminator wobble into the last three
    # steps, total 29.5 -> 43.3 at step 28, with the same fall before it); a run that does not learn stays near 1.0
    assert sum(recon[-10:]) / 10 < 0.9 * sum(recon[:3]) / 3, recon
    assert sum(total[-10:]) / 10 < sum(total[:3]) / 3, total


def _checkpoint_tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    """Model and discriminator weights, EMA shadow parameters and optimizer moments of a checkpoint."""
    tensors = {}
    for f in sorted(ckpt.glob("model*.safetensors")):
        tensors.update({f"{f.stem}/{k}": v for k, v in load_file(f).items()})
    for f in sorted(ckpt.glob("optimizer*.bin")):
        state = torch.load(f, weights_only=True)["state"]
        tensors.update({f"{f.stem}/{i}/{k}": v for i, s in state.items() for k, v in s.items() if torch.is_tensor(v)})
    with open(ckpt / "custom_checkpoint_0.pkl", "rb") as fh:
        ema = torch.load(fh, weights_only=True)
    tensors.update({f"ema/{i}": p for i, p in enumerate(ema["shadow_params"])})
    return tensors


def assert_same_checkpoint(a: Path, b: Path) -> None:
    ta, tb = _checkpoint_tensors(a), _checkpoint_tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"


def test_stop_and_resume_equals_an_uninterrupted_run(dataset, tmp_path):
    overrides = ("max_steps=4", "checkpoint_every=100", "validate_every=0", "images_every=0", "tracker=none")
    whole = train(tiny(dataset, tmp_path / "whole", *overrides))
    first = train(tiny(dataset, tmp_path / "parts", *overrides), max_steps_this_run=2)
    assert (first.step, first.checkpoint.name) == (2, "checkpoint-2")
    second = train(tiny(dataset, tmp_path / "parts", *overrides), resume=True)
    assert second.step == 4
    assert_same_checkpoint(whole.checkpoint, second.checkpoint)


def test_killed_run_keeps_its_last_checkpoint_and_resumes(dataset, tmp_path):
    """SIGKILL mid-run (no chance to clean up): the newest complete checkpoint loads and the run finishes."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "train" / "train.py"),
        "--config",
        str(TINY),
        f"data.path={dataset}",
        f"output_dir={out}",
        "max_steps=40",
        "checkpoint_every=1",
        "validate_every=0",
        "images_every=0",
        "tracker=none",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        # wait for a *complete* checkpoint of step >= 3 (the folder appears before it is finished)
        while (ready := latest_checkpoint(out)) is None or int(ready.name.split("-")[1]) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "training ended or stalled before step 3"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and int(ckpt.name.split("-")[1]) >= 3
    resumed = subprocess.run(
        cmd[:2] + ["--resume", "--max-steps-this-run", "1"] + cmd[2:],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {ckpt}" in resumed.stdout + resumed.stderr
    assert latest_checkpoint(out).name == f"checkpoint-{int(ckpt.name.split('-')[1]) + 1}"


def test_graceful_stop_signal_checkpoints_the_current_step(dataset, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "train" / "train.py"),
        "--config",
        str(TINY),
        f"data.path={dataset}",
        f"output_dir={out}",
        "max_steps=1000",
        "checkpoint_every=500",
        "validate_every=0",
        "images_every=0",
        "tracker=none",
        "log_every=1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    seen = ""
    while "l1=" not in seen:  # the progress bar shows losses once a step finished
        assert proc.poll() is None and time.monotonic() < deadline, seen[-2000:]
        seen += proc.stdout.read(1)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, rest[-2000:]
    assert "reason=interrupted" in rest
    step = int(rest.split("RESULT step=")[1].split()[0])
    assert latest_checkpoint(out).name == f"checkpoint-{step}"


def test_export_loads_with_from_pretrained_and_matches_the_ema_weights(dataset, tmp_path):
    cfg = tiny(dataset, tmp_path / "run", "max_steps=2", "validate_every=0", "images_every=0", "tracker=none")
    result = train(cfg)
    loaded = PSPGAN.from_pretrained(str(result.export)).eval()
    with open(result.checkpoint / "custom_checkpoint_0.pkl", "rb") as fh:
        shadow = torch.load(fh, weights_only=True)["shadow_params"]
    trained = load_file(result.checkpoint / "model.safetensors")
    ema = PSPGAN(cfg.model).eval()
    ema.load_state_dict(trained)  # buffers (fixed noise) as trained
    with torch.no_grad():
        for p, s in zip(ema.parameters(), shadow, strict=True):
            p.copy_(s)
    assert any(not torch.equal(v, loaded.state_dict()[k]) for k, v in trained.items()), (
        "export must be the EMA, not the raw weights"
    )
    torch.manual_seed(0)
    lq, refs = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 3, 64, 64) * 2 - 1
    mask = torch.tensor([[True, True, False], [True, False, False]])
    with torch.no_grad():
        assert torch.equal(loaded(lq, refs, mask).image, ema(lq, refs, mask).image)


def test_profile_steps_profiles_the_run_steps_after_its_first_20(dataset, tmp_path, capsys):
    quiet = ("validate_every=0", "images_every=0", "tracker=none", "checkpoint_every=100")
    cfg = tiny(dataset, tmp_path / "run", "stage=prior", "max_steps=23", "profile_steps=2", *quiet)
    assert train(cfg).step == 23
    profile = json.loads((tmp_path / "run" / "profile.json").read_text())
    assert profile["train_steps"] == [21, 22] and profile["profiled_steps"] == 2 and profile["wall_ms_per_step"] > 0
    # no GPU here: no kernels to count, and no busy share that would look measured
    assert profile["kernels_per_step"] == 0 and profile["gpu_busy_share"] is None
    # the host's side: an eager run dispatches every operator itself, in all three parts of the step
    host = profile["host"]
    assert host["compiled_calls_per_step"] == 0 and host["eager_ops_per_step"] > 0
    assert all(part["ops_per_step"] > 0 for part in host["eager_by_context"].values()), host["eager_by_context"]
    out = capsys.readouterr().out
    assert "profile of steps 21-22:" in out and "eager operators" in out
    train(tiny(dataset, tmp_path / "off", "stage=prior", "max_steps=23", *quiet))  # profile_steps 0: no file
    assert not (tmp_path / "off" / "profile.json").exists()


def test_prior_stage_trains_exports_and_feeds_pspgan(dataset, tmp_path):
    cfg = tiny(
        dataset, tmp_path / "prior", "stage=prior", "max_steps=2", "validate_every=0", "tracker=none", "images_every=2"
    )
    result = train(cfg)
    assert result.export.name == PRIOR_FILE and (tmp_path / "prior" / "samples" / "step_0000002.png").is_file()
    model = PSPGAN(cfg.model)
    model.load_prior(result.export)  # strict key check inside
    prior = load_file(result.export)
    loaded = model.generator.state_dict()
    assert prior and all(torch.equal(loaded[k], v) for k, v in prior.items())
    cfg2 = tiny(
        dataset,
        tmp_path / "psp",
        f"prior_path={result.export.parent}",
        "max_steps=1",
        "validate_every=0",
        "images_every=0",
        "tracker=none",
    )
    assert train(cfg2).step == 1


def test_config_rejects_unknown_keys_and_mismatched_sizes(dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        tiny(dataset, tmp_path, "learning_rate=1")
    with pytest.raises(ValueError, match="must equal model.out_size"):
        tiny(dataset, tmp_path, "data.out_size=128")


def test_stylegan2_weights_get_equalized_learning_rates():
    from psp_hub.models import StyleGAN2Generator
    from psp_hub.training.param_groups import equalized_lr_groups

    g = StyleGAN2Generator(32, style_dim=16, n_mlp=8, narrow=0.125, max_channels=16)
    lr_of = {id(p): group["lr"] for group in equalized_lr_groups(g, 2e-3) for p in group["params"]}
    assert len(lr_of) == sum(1 for p in g.parameters() if p.requires_grad)
    mapping = next(m for m in g.style_mlp if isinstance(m, torch.nn.Linear))
    assert lr_of[id(mapping.weight)] == pytest.approx(2e-3 * 0.01 / 16**0.5)
    conv = g.style_conv1.modulated_conv
    assert lr_of[id(conv.weight)] == pytest.approx(2e-3 / (conv.weight.shape[2] * 9) ** 0.5)
    assert lr_of[id(g.style_conv1.bias)] == pytest.approx(2e-3)


def test_module_lr_slows_one_submodule_and_names_a_missing_one(dataset, tmp_path):
    """optim.module_lr={ref_unet: 0.1}: every reference-encoder parameter gets a tenth of the rate it has without
    it, every other parameter the same rate; an unknown module name or a non-number is one clear error."""
    from psp_hub.common.config import ConfigError

    def rates(*overrides) -> dict[str, float]:
        stage = make_stage(tiny(dataset, tmp_path, *overrides), Accelerator(cpu=True))
        lr_of = {id(p): g["lr"] for g in stage.opt_g.param_groups for p in g["params"]}
        return {name: lr_of[id(p)] for name, p in stage.raw_generator.named_parameters() if id(p) in lr_of}

    plain, slowed = rates(), rates("optim.module_lr={ref_unet: 0.1}")
    assert set(plain) == set(slowed) and any(name.startswith("ref_unet.") for name in plain)
    for name, lr in plain.items():
        assert slowed[name] == pytest.approx(lr * (0.1 if name.startswith("ref_unet.") else 1.0)), name
    with pytest.raises(ValueError, match="no submodule 'ref_encoder'"):
        rates("optim.module_lr={ref_encoder: 0.1}")
    with pytest.raises(ConfigError, match=r"optim.module_lr\['ref_unet'\]"):
        tiny(dataset, tmp_path, "optim.module_lr={ref_unet: slow}")


def test_prior_steps_keep_the_generator_output_bounded(dataset, tmp_path):
    """Regression: plain-weight Adam at 2e-3 blew an 8-layer-mapping StyleGAN2's output up (std 1 -> 3000) in one step."""
    cfg = tiny(dataset, tmp_path / "prior", "stage=prior", "model.n_mlp=8", "max_steps=1000")
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    batch = next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
    g = stage.raw_generator
    for i in range(5):
        stage.step(batch, i)
        with torch.no_grad():
            assert g([torch.randn(4, g.style_dim)]).std() < 10


def test_compiled_step_matches_eager_and_keeps_checkpoint_names(dataset, tmp_path):
    """`compile=true` (generator, VGG and discriminators compiled; R1 eager) computes the same step, runs the R1
    step, and saves the same keys."""
    batch = None
    results = {}
    for compiled in (False, True):
        # aot_eager: dynamo's graphs and AOT autograd without inductor's code generation, so the test stays
        # seconds long on a busy CPU (inductor's C++ compile of every region took most of its former minutes)
        cfg = tiny(
            dataset, tmp_path / f"run-{compiled}", f"compile={str(compiled).lower()}", "compile_backend=aot_eager"
        )
        set_seed(0)
        stage = make_stage(cfg, Accelerator(cpu=True))
        batch = batch or next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
        logs = stage.step(batch, 1)  # step 1: no lazy R1
        g_state, d_state = _snapshot(stage.raw_generator), [_snapshot(d) for d in stage.discriminators]
        r1_logs = stage.step(batch, cfg.losses.r1_every)  # an R1 step: the eager global D beside compiled calls
        results[compiled] = (logs, r1_logs, g_state, stage.objective.perceptual.vgg.state_dict(), d_state)
    (eager_logs, eager_r1, eager_g, eager_vgg, eager_d), (comp_logs, comp_r1, comp_g, comp_vgg, comp_d) = (
        results[False],
        results[True],
    )
    assert list(comp_g) == list(eager_g) and list(comp_vgg) == list(eager_vgg)  # no `_orig_mod.` prefixes
    assert [list(d) for d in comp_d] == [list(d) for d in eager_d]
    for name in GENERATOR_TERMS | {"d_global", "d_components", "g_total"}:
        assert float(comp_logs[name]) == pytest.approx(float(eager_logs[name]), rel=1e-3, abs=1e-5), name
    print(f"r1 eager {float(eager_r1['r1']):.6g} compiled {float(comp_r1['r1']):.6g}")
    assert float(comp_r1["r1"]) == pytest.approx(float(eager_r1["r1"]), rel=5e-2)
    # the first step's updates agree too: Adam's first step is about lr * sign(grad), so where a gradient is ~0 the
    # rounding of the compiled kernels may flip it (a difference of up to 2 lr); elsewhere they match closely
    _assert_updates_agree(
        "compiled vs eager, G", [comp_g], [eager_g], 2 * _adam_max_travel(cfg.optim.lr, cfg.optim.betas, steps=1)
    )
    _assert_updates_agree(
        "compiled vs eager, D", comp_d, eager_d, 2 * _adam_max_travel(cfg.optim.d_lr, cfg.optim.betas, steps=1)
    )


def test_step_timing_keeps_compiling_out_of_the_time_budget_and_the_speed():
    """A compiled run's step 0 is mostly compiling (minutes on the device): the time-budget check and the speeds count
    the steps without it (before, a 300 s first step ended an 8-minute chunk right after it: twice the longest of
    the last 20 steps no longer fitted), and compile_s shows it apart."""
    timing = _Timing()
    timing.add(300.0, compiling=299.5)
    for _ in range(5):
        timing.add(0.5)
    assert timing.longest_recent_step() == pytest.approx(0.5)
    summary = timing.summary(per_step=32, processes=1, wait_s=0.3)
    assert summary["compile_s"] == 299.5 and summary["seconds"] == pytest.approx(302.5)
    assert summary["it_per_s"] == pytest.approx(2.0) and summary["samples_per_s"] == pytest.approx(64.0)
    assert summary["data_wait_share"] == pytest.approx(0.1)


def test_a_compiled_run_reports_its_compiling_apart(dataset, tmp_path):
    """A compiled run (aot_eager: seconds on the CPU) counts the compiling inside its steps; an eager one none."""
    for compiled in (False, True):
        out = tmp_path / f"run-{compiled}"
        cfg = tiny(dataset, out, "max_steps=2", f"compile={str(compiled).lower()}", "compile_backend=aot_eager")
        assert train(cfg).step == 2
        last = json.loads((out / "last_run.json").read_text())
        assert (last["compile_s"] > 0) == compiled and last["seconds"] > last["compile_s"], last


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's weights now (later steps update the live tensors in place)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_updates_agree(what: str, states: list[dict], reference: list[dict], max_diff: float) -> None:
    """Two runs' weights agree: no weight further apart than `max_diff` (a flipped Adam step on a ~0 gradient),
    and fewer than 0.1 % of them apart by more than 1e-5."""
    diff = torch.cat([(a[k].float() - b[k].float()).abs().flatten() for a, b in zip(states, reference) for k in b])
    print(f"{what}: max {float(diff.max()):.2e}, share > 1e-5 {float((diff > 1e-5).float().mean()):.2e}")
    assert diff.max() <= max_diff + 1e-6
    assert (diff > 1e-5).float().mean() < 1e-3


def _adam_max_travel(lr: float, betas, steps: int) -> float:
    """Largest distance a weight can move in `steps` Adam steps with beta1 = 0: step t moves it by at most
    lr * sqrt((1 - beta2^t) / (1 - beta2)) (reached when the earlier gradients were zero)."""
    beta1, beta2 = betas
    assert beta1 == 0, "this bound is for beta1 = 0 (the tiny config's)"
    return sum(lr * math.sqrt((1 - beta2**t) / (1 - beta2)) for t in range(1, steps + 1))


def test_fused_adam_takes_the_same_steps(dataset, tmp_path):
    """`optim.fused=true` (torch's fused Adam, fewer kernel launches) updates the weights as the default Adam does."""
    batch, start, weights = None, None, {}
    for fused in (False, True):
        cfg = tiny(dataset, tmp_path / f"run-{fused}", f"optim.fused={str(fused).lower()}")
        set_seed(0)
        stage = make_stage(cfg, Accelerator(cpu=True))
        assert all(opt.optimizer.defaults["fused"] is (True if fused else None) for opt in (stage.opt_g, stage.opt_d))
        start = start or _snapshot(stage.raw_generator)
        batch = batch or next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
        for step in (1, 2):
            stage.step(batch, step)
        weights[fused] = _snapshot(stage.raw_generator)
    assert any(not torch.equal(weights[False][k], start[k]) for k in start)  # the steps did move the weights
    # Adam's first steps move a weight by about lr * sign(grad): where a gradient is ~0, rounding differences
    # between the kernels may flip that sign (up to 2 lr per step); everywhere else the weights agree
    _assert_updates_agree("fused vs default", [weights[True]], [weights[False]], 2 * 2 * cfg.optim.lr)


def test_a_config_mistake_is_one_line_not_a_traceback(tmp_path):
    """train.py names the bad key and exits 2; YAML's unquoted `no` (a boolean) gets a hint to quote it."""
    base = [sys.executable, str(ROOT / "train" / "train.py"), "--config", str(TINY), f"output_dir={tmp_path}"]
    for override, expected in [
        ("mixed_precision=no", "mixed_precision must be one of ['no', 'bf16', 'fp16'], got False (YAML reads"),
        ("losses.l2=1.0", "l2"),
    ]:
        run = subprocess.run(base + [override], capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 2, run.stderr[-3000:]
        assert "Traceback" not in run.stderr and expected in run.stderr, run.stderr[-3000:]
        assert run.stderr.strip().splitlines()[-1].startswith("config error: ")


def test_a_diverged_run_stops_with_a_clear_error_and_keeps_its_good_checkpoint(dataset, tmp_path):
    """Non-finite losses end the run (exit code 3, one line) before they can overwrite the last good checkpoint."""
    out = tmp_path / "run"
    base = [sys.executable, str(ROOT / "train" / "train.py"), "--config", str(TINY)]
    common = [
        f"data.path={dataset}",
        f"output_dir={out}",
        "max_steps=6",
        "checkpoint_every=2",
        "validate_every=0",
        "images_every=0",
        "tracker=none",
        "log_every=3",
    ]
    good = subprocess.run(
        base + ["--max-steps-this-run", "2"] + common, capture_output=True, text=True, timeout=600, check=False
    )
    assert good.returncode == 0, good.stderr[-3000:]
    before = {p.name: p.read_bytes() for p in (out / "checkpoints" / "checkpoint-2").iterdir() if p.is_file()}
    # an infinite loss weight makes every generator term after the resume non-finite; the check runs at step 3
    # (log_every) and would run at step 4 (checkpoint_every) at the latest
    bad = subprocess.run(
        base + ["--resume"] + common + ["losses.l1=.inf"], capture_output=True, text=True, timeout=600, check=False
    )
    assert bad.returncode == 3, bad.stderr[-3000:]
    assert "TRAINING DIVERGED: step 3:" in bad.stderr and "Traceback" not in bad.stderr
    assert "l1" in bad.stderr.split("TRAINING DIVERGED")[1] and "checkpoint-2" in bad.stderr
    assert latest_checkpoint(out).name == "checkpoint-2"
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-2"
    ]
    assert {p.name: p.read_bytes() for p in (out / "checkpoints" / "checkpoint-2").iterdir() if p.is_file()} == before
    assert not (out / "export").exists()


def test_init_from_fine_tunes_a_trained_model_and_rejects_a_different_architecture(dataset, tmp_path):
    """`init_from` starts the generator (and its EMA) from a Hub-layout export; a mismatched config is named."""
    first = train(
        tiny(dataset, tmp_path / "first", "max_steps=2", "validate_every=0", "images_every=0", "tracker=none")
    )
    result_export = first.export
    source = PSPGAN.from_pretrained(str(result_export)).state_dict()
    cfg = tiny(dataset, tmp_path / "tuned", f"init_from={result_export}", "losses.identity_criterion=cosine")
    stage = make_stage(cfg, Accelerator(cpu=True))
    assert stage.objective.identity.criterion == "cosine"
    start = stage.raw_generator.state_dict()
    assert all(torch.equal(start[k], v) for k, v in source.items()) and start.keys() == source.keys()
    ema = [s.clone() for s in stage.ema.shadow_params]
    assert all(torch.equal(s, p) for s, p in zip(ema, stage.raw_generator.parameters(), strict=True))
    assert (
        train(
            tiny(
                dataset,
                tmp_path / "tuned2",
                f"init_from={result_export}",
                "max_steps=1",
                "validate_every=0",
                "images_every=0",
                "tracker=none",
            )
        ).step
        == 1
    )
    with pytest.raises(ValueError, match=r"config differs .*latent_channels \(8 vs 4\)"):
        make_stage(
            tiny(dataset, tmp_path / "bad", f"init_from={result_export}", "model.latent_channels=4"),
            Accelerator(cpu=True),
        )
    with pytest.raises(ValueError, match="not both"):
        tiny(dataset, tmp_path / "both", f"init_from={result_export}", "prior_path=somewhere")


def test_frozen_modules_keep_their_weights_through_a_fine_tune(dataset, tmp_path):
    """`frozen_modules=[ref_unet]`: a fine-tune moves the rest of the generator and never the reference encoder;
    an unknown module name is refused with the model's top-level names."""
    quiet = ("validate_every=0", "images_every=0", "tracker=none")
    source = train(tiny(dataset, tmp_path / "first", "max_steps=1", *quiet)).export
    tuned = train(
        tiny(dataset, tmp_path / "tuned", f"init_from={source}", "frozen_modules=[ref_unet]", "max_steps=2", *quiet)
    ).export
    before, after = PSPGAN.from_pretrained(str(source)).state_dict(), PSPGAN.from_pretrained(str(tuned)).state_dict()
    ref_keys = [k for k in before if k.startswith("ref_unet.")]
    assert ref_keys and all(torch.equal(before[k], after[k]) for k in ref_keys)
    assert not torch.equal(before["lr_unet.stem.weight"], after["lr_unet.stem.weight"])
    with pytest.raises(ValueError, match="no submodule 'ref_net'.*ref_unet"):
        make_stage(tiny(dataset, tmp_path / "bad", "frozen_modules=[ref_net]"), Accelerator(cpu=True))


def test_adversarial_terms_ramp_in_over_the_warmup_and_the_rest_do_not():
    objective = PSPGANObjective(LossWeights(perceptual=0, identity=0, adversarial_warmup=4), 64)
    losses = {name: torch.tensor(2.0) for name in ("l1", "gan", "component_gan", "component_style")}
    assert objective.ramped(losses, 0) == {"l1": 2.0, "gan": 0.0, "component_gan": 0.0, "component_style": 0.0}
    assert objective.ramped(losses, 1)["gan"] == 0.5 and objective.ramped(losses, 1)["l1"] == 2.0
    assert objective.ramped(losses, 4) is losses
    assert PSPGANObjective(LossWeights(perceptual=0, identity=0), 64).ramped(losses, 0) is losses


def test_optimised_step_gives_the_same_losses_as_the_plain_one(dataset, tmp_path):
    """Channels-last networks and batches, fused Adam and bf16 loss nets (a no-op without bf16 mixed precision):
    the same losses for the same batch, step after step (step 0 includes lazy R1)."""
    batch, logs = None, {}
    for fast in (False, True):
        flags = ["channels_last=true", "optim.fused=true", "loss_nets_bf16=true"] if fast else []
        cfg = tiny(dataset, tmp_path / f"run-{fast}", *flags)
        set_seed(0)
        stage = make_stage(cfg, Accelerator(cpu=True))
        if fast:
            weight = next(p for p in stage.discriminators[0].parameters() if p.ndim == 4 and p.shape[-1] > 1)
            assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
            assert next(stage.objective.perceptual.vgg.parameters()).dtype == torch.float32  # no bf16 autocast here
        batch = batch or next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
        logs[fast] = [stage.step(batch_to_device(batch, "cpu", cfg.channels_last), s) for s in (0, 1, 2)]
    assert logs[True][0].keys() == logs[False][0].keys() and "r1" in logs[True][0]
    # the gram-matrix style term squares the two paths' rounding differences: on a clean-clone CI run its step-2
    # values differed by 1.007e-3 relative (1.10838 against 1.10950) where every other term stayed within 1e-3
    rel = {"component_style": 2e-3}
    for plain, fast in zip(logs[False], logs[True]):
        for name, value in plain.items():
            assert float(fast[name]) == pytest.approx(float(value), rel=rel.get(name, 1e-3), abs=1e-5), name


def test_loss_nets_go_bf16_under_bf16_mixed_precision(dataset, tmp_path, fresh_accelerator_state):
    stage = make_stage(
        tiny(dataset, tmp_path, "loss_nets_bf16=true", "mixed_precision=bf16"),
        Accelerator(cpu=True, mixed_precision="bf16"),
    )
    assert next(stage.objective.perceptual.vgg.parameters()).dtype == torch.bfloat16
    assert next(stage.objective.identity.encoder.net.parameters()).dtype == torch.bfloat16
    assert next(stage.raw_generator.parameters()).dtype == torch.float32  # the trained weights stay fp32


def _tiny_overrides(dataset, out: Path, refs: int, recipe: Path) -> list[str]:
    """A 256 px config shrunk to the tiny CPU network (64 px, narrow channels; the recipe's reference selection kept,
    since its losses need it), two steps, no extras, its export kept inside the test's folder."""
    import yaml

    model = yaml.safe_load(TINY.read_text())["model"]
    model["reference_selection"] = TrainConfig.from_yaml(recipe).model.reference_selection
    return [
        f"model={json.dumps(model)}",
        f"export_dir={out / 'export'}",
        "data.out_size=64",
        f"data.max_references={refs}",
        f"data.path={dataset}",
        f"output_dir={out}",
        "batch_size=2",
        "max_steps=2",
        "mixed_precision='no'",
        "d_narrow=0.0625",
        "component_d_channels=8",
        "init_from=null",
        "prior_path=null",
        "validate_every=0",
        "images_every=0",
        "tracker=none",
        "checkpoint_every=2",
    ]


@pytest.mark.parametrize("recipe", sorted((ROOT / "train" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_loads_as_a_train_config(recipe):
    """Each shipped recipe (and those that extend another) parses into a valid TrainConfig, so a typo in a key or a
    value fails here rather than at the start of a device call."""
    cfg = TrainConfig.from_yaml(recipe)
    assert cfg.stage in ("prior", "pspgan") and cfg.batch_size >= 1 and cfg.data.out_size == cfg.model.out_size


@pytest.mark.parametrize("name,refs", [("prior-256", 0), ("psp-256", 2)])
def test_256_configs_train_a_tiny_variant_on_the_resident_loader(dataset, tmp_path, name, refs):
    """Both 256 px configs as the device runs them, shrunk: psp-256 with its second (here the same) dataset and the
    mixed-resolution threshold at the tiny set's median sharpness (118 of 88-128 px), so both levels occur."""
    mixed = ["data.extra_path=" + str(dataset), "data.sharp_threshold=118"] if name == "psp-256" else []
    recipe = ROOT / "train" / "configs" / f"{name}.yaml"
    cfg = TrainConfig.from_yaml(recipe, _tiny_overrides(dataset, tmp_path / name, refs, recipe) + mixed)
    assert cfg.data.loader == "resident" and cfg.channels_last and cfg.optim.fused
    assert cfg.losses.diffaug == "color,translation,cutout"
    result = train(cfg)
    assert result.step == 2 and result.reason == "finished" and result.checkpoint.name == "checkpoint-2"
    last = json.loads((tmp_path / name / "last_run.json").read_text())
    assert last["steps_this_run"] == 2 and 0 <= last["data_wait_share"] < 1


def test_the_256_prior_warm_starts_from_a_128_prior_export(tmp_path):
    """prior-256's init_from (a 128 px prior export; here the bundled model's decoder saved as one): every 4-128 px
    layer loads, the 256 px conv pair, to-RGB and noise start fresh, nothing is dropped, and the EMA starts from the
    loaded weights. A PSP-GAN folder gives the same tensors (its `generator.` decoder)."""
    from safetensors.torch import save_file

    bundled = str(ROOT / "checkpoints" / "psp-gan-128")
    source = PSPGAN.from_pretrained(bundled).generator.state_dict()
    assert prior_state_dict(bundled).keys() == source.keys()
    export = tmp_path / "prior-128-export"
    export.mkdir()
    save_file({k: v.contiguous() for k, v in source.items()}, str(export / PRIOR_FILE))
    cfg = TrainConfig.from_yaml(
        ROOT / "train" / "configs" / "prior-256.yaml",
        [f"output_dir={tmp_path / 'run'}", "mixed_precision='no'", "tracker=none", f"init_from={export}"],
    )
    stage = make_stage(cfg, Accelerator(cpu=True))
    g = stage.raw_generator.state_dict()
    new = sorted(set(g) - set(source))
    assert new and all(k.startswith(("style_convs.10.", "style_convs.11.", "to_rgbs.5.", "noises.noise1")) for k in new)
    assert set(source) <= set(g) and all(torch.equal(g[k], v) for k, v in source.items())
    assert all(torch.equal(s, p) for s, p in zip(stage.ema.shadow_params, stage.raw_generator.parameters()))
    fresh = StyleGAN2Generator(32, style_dim=16, n_mlp=2, narrow=0.125, max_channels=16)
    with pytest.raises(ValueError, match="no tensor matches"):
        load_matching(fresh, {"unrelated": torch.zeros(1)})


def test_one_rule_for_the_boost_phase_boundary(dataset, tmp_path):
    """boost_start 0.875 of 6 steps is 5.25: the boost phase starts at step 6 in the trainer and the data schedule."""
    cfg = tiny(dataset, tmp_path, "max_steps=6")
    assert boost_start_iteration(cfg.data, 6) == 6
    assert phase_for(cfg, 5) == ("main", 0) and phase_for(cfg, 6) == ("boost", 6)
    assert phase_position(cfg.data, 6, 6, 2) == ("boost", 0)
    assert phase_for(tiny(dataset, tmp_path, "max_steps=6", "stage=prior"), 6) == ("main", 0)


def test_larger_batches_scale_lr_by_sqrt_and_keep_the_ema_half_life():
    base = OptimConfig(lr=1e-3, d_lr=2e-3, ema_decay=0.999, reference_batch=16)
    big = scaled_for_batch(base, 64)
    assert big.lr == pytest.approx(2e-3) and big.d_lr == pytest.approx(4e-3)
    assert big.ema_decay ** (1 / 64) == pytest.approx(base.ema_decay ** (1 / 16))  # the same decay per sample
    assert scaled_for_batch(OptimConfig(lr=1e-3), 64).lr == 1e-3  # reference_batch 0: as given


def test_ema_weights_swap_in_and_back_even_on_an_error():
    model = torch.nn.Linear(3, 2)
    ema = make_ema(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    own = model.weight.detach().clone()
    with ema_weights(ema, model):
        assert torch.equal(model.weight, ema.shadow_params[0])
    assert torch.equal(model.weight, own)
    with pytest.raises(RuntimeError), ema_weights(ema, model):
        raise RuntimeError("inside")
    assert torch.equal(model.weight, own)
