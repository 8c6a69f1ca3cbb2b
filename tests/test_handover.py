"""A run continued on another machine from its export and hand-over (training/handover.py) goes on where it was:
the step counter and every step-driven schedule, the discriminators' weights; a hand-over that does not fit is
refused in one line; the eye/mouth terms start at losses.component_from, their discriminators idle before it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file

from psp_hub.common.config import ConfigError
from psp_hub.data import build_train_dataloader
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.training import TrainConfig, train
from psp_hub.training.handover import DISCRIMINATORS_FILE, HANDOVER_FILE, read_handover
from psp_hub.training.make_handover import main as make_handover
from psp_hub.training.stages import make_stage

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train" / "configs" / "tiny-cpu.yaml"
N = 3  # the step the first run hands over at
# 6 steps, lr halved at steps 3 and 4 (0.5 and 0.75 of 6, rounded), warm-up over 4 steps, R1 every 2 (tiny-cpu.yaml)
RUN = (
    "max_steps=6",
    "optim.decay_at=[0.5,0.75]",
    "losses.adversarial_warmup=4",
    "checkpoint_every=100",
    "validate_every=0",
    "images_every=0",
    "tracker=none",
)
COMPONENT_LOGS = ("component_gan", "component_style", "d_components")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("handover-data"))


def tiny(dataset, out: Path, *overrides: str) -> TrainConfig:
    return TrainConfig.from_yaml(TINY, [f"data.path={dataset}", f"output_dir={out}", *overrides])


def logged(run_dir: Path) -> dict[int, dict]:
    """metrics.jsonl by step."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def first(dataset, tmp_path_factory):
    """A run stopped at step N with an export and a hand-over (and its checkpoint at N)."""
    root = tmp_path_factory.mktemp("first")
    result = train(
        tiny(dataset, root / "run", *RUN, f"handover_dir={root / 'handover'}"), max_steps_this_run=N, export=True
    )
    assert (result.step, result.checkpoint.name) == (N, f"checkpoint-{N}")
    return {"root": root, "export": result.export, "handover": root / "handover", "checkpoint": result.checkpoint}


def continued(dataset, first, out: Path, *overrides: str) -> TrainConfig:
    return tiny(dataset, out, *RUN, f"init_from={first['export']}", f"continue_from={first['handover']}", *overrides)


def test_a_continued_run_goes_on_at_the_step_with_the_schedules_and_discriminators(dataset, first, tmp_path):
    handover = read_handover(first["handover"])
    assert (handover.step, handover.has_discriminators, handover.adversarial_from) == (N, True, 0)
    saved = {f"model_{i}": load_file(first["checkpoint"] / f"model_{i}.safetensors") for i in range(1, 5)}
    stage = make_stage(continued(dataset, first, tmp_path / "built"), Accelerator(cpu=True))
    for (name, state), (_, ckpt) in zip(stage.discriminator_states().items(), saved.items(), strict=True):
        assert state.keys() == ckpt.keys(), name
        for key, value in state.items():  # fp16 storage: within half precision's rounding of the fp32 weights
            torch.testing.assert_close(value, ckpt[key], rtol=1e-3, atol=1e-4, msg=f"{name}.{key}")
    assert stage.sched_g.get_last_lr() == pytest.approx([g["lr"] for g in stage.opt_g.param_groups])

    whole = train(tiny(dataset, tmp_path / "whole", *RUN))
    after = train(continued(dataset, first, tmp_path / "after"))
    assert (whole.step, after.step) == (6, 6)
    a, w = logged(tmp_path / "after"), logged(tmp_path / "whole")
    assert sorted(a) == [4, 5, 6]  # its first logged step is N + 1
    for step in a:  # the lr decays where the unbroken run's do; R1 on the same steps (its loss logged when due)
        assert a[step]["lr"] == pytest.approx(w[step]["lr"]), step
        assert ("r1" in a[step]) == ("r1" in w[step]), step
    assert [w[s]["lr"] for s in (3, 4)] == pytest.approx([1e-3, 5e-4])  # the decays are inside the compared steps


def test_the_warm_up_continues_and_the_data_stream_goes_on(dataset, first, tmp_path):
    stage = make_stage(continued(dataset, first, tmp_path / "built"), Accelerator(cpu=True))
    losses = {"l1": torch.tensor(1.0), "gan": torch.tensor(1.0), "component_gan": torch.tensor(1.0)}
    # at step N the unbroken run's ramp is N / 4; a restarted one would be at 0
    assert float(stage.objective.ramped(losses, N)["gan"]) == pytest.approx(N / 4)
    result = train(continued(dataset, first, tmp_path / "run", "max_steps=4"))
    last = json.loads((tmp_path / "run" / "last_run.json").read_text())
    assert (result.step, last["steps_this_run"]) == (4, 1)
    ckpt = json.loads((result.checkpoint / "meta.json").read_text())
    assert ckpt["samples_seen"] == 4 * 2  # per process, as if it had run from step 0 (batch 2)


def test_a_hand_over_that_does_not_fit_is_refused_in_one_line(dataset, first, tmp_path):
    with pytest.raises(ConfigError, match=r"^continue_from .*: .*d_narrow 0\.0625 \(run: 0\.125\)$"):
        continued(dataset, first, tmp_path / "a", "d_narrow=0.125")
    with pytest.raises(ConfigError, match=r"component_d_channels 8 \(run: 16\)"):
        continued(dataset, first, tmp_path / "b", "component_d_channels=16")
    with pytest.raises(ConfigError, match=r"continue_from needs init_from"):
        tiny(dataset, tmp_path / "c", *RUN, f"continue_from={first['handover']}")
    with pytest.raises(ConfigError, match=r"no handover\.json"):
        continued(dataset, first, tmp_path / "d", f"continue_from={tmp_path}")
    other = train(tiny(dataset, tmp_path / "other", *RUN, "max_steps=1")).export
    with pytest.raises(ConfigError, match=r"init_from .* is not the export written with it$"):
        continued(dataset, first, tmp_path / "e", f"init_from={other}")


def test_an_fp16_export_continues_like_its_fp32_original(dataset, first, tmp_path):
    """export_dtype=float16 stores the export in half (how it travels beside its hand-over), and the hand-over's
    export digest (over fp16-rounded weights) accepts an fp16 copy of the fp32 export written with it."""
    half = train(tiny(dataset, tmp_path / "half", *RUN, "max_steps=1", "export_dtype=float16")).export
    assert {t.dtype for t in load_file(str(half / "model.safetensors")).values()} == {torch.float16}
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.json").write_text((first["export"] / "config.json").read_text())
    state = load_file(str(first["export"] / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(copy / "model.safetensors"))
    assert continued(dataset, first, tmp_path / "c", f"init_from={copy}").init_from == str(copy)
    state[next(iter(state))] += 0.5  # a different generator is still refused
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(ConfigError, match=r"is not the export written with it$"):
        continued(dataset, first, tmp_path / "d", f"init_from={copy}")


def test_resume_wins_at_or_past_the_hand_over_and_a_checkpoint_behind_it_is_refused(dataset, first, tmp_path):
    behind = tmp_path / "behind"
    train(tiny(dataset, behind, *RUN), max_steps_this_run=1)
    with pytest.raises(ConfigError, match=r"--resume found .*checkpoint-1 at step 1, behind continue_from's step 3"):
        train(continued(dataset, first, behind), resume=True)
    overrides = [f"data.path={dataset}", f"output_dir={behind}", *RUN]
    overrides += [f"init_from={first['export']}", f"continue_from={first['handover']}"]
    cli = [sys.executable, str(ROOT / "train" / "train.py"), "--config", str(TINY), "--resume", *overrides]
    run = subprocess.run(cli, capture_output=True, text=True, check=False)  # train.py says it in one line
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1].startswith("config error: --resume found")
    ahead = tmp_path / "ahead"
    train(continued(dataset, first, ahead, "max_steps=4"))  # continued to step 4 on this machine
    result = train(continued(dataset, first, ahead, "max_steps=5"), resume=True)
    assert result.step == 5 and sorted(logged(ahead)) == [4, 5]  # resumed at 4, not restarted at N


def test_hand_overs_from_a_checkpoint_and_step_only(dataset, first, tmp_path):
    """The CLI: from an accelerate checkpoint (the same tensors as the export's hand-over), or a step alone (fresh
    discriminators, so the warm-up starts again there)."""
    base = ["--config", str(TINY), f"data.path={dataset}", *RUN]
    assert make_handover([*base, "--out", str(tmp_path / "ck"), "--checkpoint", str(first["checkpoint"])]) == 0
    a, b = load_file(tmp_path / "ck" / DISCRIMINATORS_FILE), load_file(first["handover"] / DISCRIMINATORS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float16 for v in a.values())
    assert read_handover(tmp_path / "ck").components_trained

    assert (
        make_handover([*base, "--out", str(tmp_path / "st"), "--step", str(N), "--export", str(first["export"])]) == 0
    )
    assert not (tmp_path / "st" / DISCRIMINATORS_FILE).exists() and (tmp_path / "st" / HANDOVER_FILE).is_file()
    cfg = continued(dataset, first, tmp_path / "run", f"continue_from={tmp_path / 'st'}")
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    assert stage.start_step == N and stage.objective.adversarial_from == N
    losses = {"gan": torch.tensor(1.0), "component_gan": torch.tensor(1.0)}
    assert stage.objective.ramped(losses, N) == {"gan": 0.0, "component_gan": 0.0}
    assert float(stage.objective.ramped(losses, N + 2)["gan"]) == pytest.approx(0.5)

    # eye/mouth discriminators that never trained may not come in at full weight
    off = ("losses.component_gan=0", "losses.component_style=0")
    assert make_handover([*base, *off, "--out", str(tmp_path / "off"), "--checkpoint", str(first["checkpoint"])]) == 0
    with pytest.raises(ConfigError, match=r"never trained; set losses.component_from >= 3"):
        continued(dataset, first, tmp_path / "x", f"continue_from={tmp_path / 'off'}")
    continued(dataset, first, tmp_path / "x", f"continue_from={tmp_path / 'off'}", "losses.component_from=3")


def test_component_terms_start_at_component_from_and_their_discriminators_idle_before(dataset, tmp_path):
    run = ("max_steps=5", "losses.component_from=3", "losses.adversarial_warmup=2", *RUN[3:])
    train(tiny(dataset, tmp_path / "run", *run))
    logs = logged(tmp_path / "run")
    # logged step s ran at step s - 1: zero through step 3 (component_from, ramp 0), weighted at step 4 (ramp 0.5)
    for step in (1, 2, 3):
        assert all(logs[step][k] == 0.0 for k in COMPONENT_LOGS), logs[step]
    assert logs[4]["component_gan"] == 0.0 and logs[4]["d_components"] > 0  # step 3: they learn, not yet weighted
    assert all(logs[5][k] > 0 for k in COMPONENT_LOGS), logs[5]
    assert all(logs[s]["gan"] > 0 for s in (2, 3))  # the global GAN ramps from step 0 as before

    cfg = tiny(dataset, tmp_path / "stage", *run)
    set_seed(0)
    stage = make_stage(cfg, Accelerator(cpu=True))
    batch = next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size)))
    snap = {n: {k: v.clone() for k, v in s.items()} for n, s in stage.discriminator_states().items()}
    for step in range(3):
        stage.step(batch, step)
    now = stage.discriminator_states()
    moved = {n for n, s in now.items() if any(not torch.equal(v, snap[n][k]) for k, v in s.items())}
    assert moved == {"global_d"}
    stage.step(batch, 3)
    now = stage.discriminator_states()
    assert all(
        not torch.equal(now[n]["final_conv.0.weight"], snap[n]["final_conv.0.weight"]) for n in ("left_eye", "mouth")
    )
    with pytest.raises(ConfigError, match="component_from needs"):
        tiny(dataset, tmp_path, "losses.component_from=3", "losses.component_gan=0", "losses.component_style=0")


def test_the_prior_stage_hands_over_its_discriminator_too(dataset, tmp_path):
    prior = ("stage=prior", *RUN)
    first = train(tiny(dataset, tmp_path / "a", *prior, f"handover_dir={tmp_path / 'h'}"), max_steps_this_run=2)
    assert first.export is None and not (tmp_path / "h").exists()  # a hand-over comes with an export only
    first = train(
        tiny(dataset, tmp_path / "b", *prior, f"handover_dir={tmp_path / 'h'}"), max_steps_this_run=2, export=True
    )
    assert read_handover(tmp_path / "h").signature == {
        "stage": "prior",
        "out_size": 64,
        "d_narrow": 0.0625,
        "channel_multiplier": 1,
    }
    cfg = tiny(dataset, tmp_path / "c", *prior, f"init_from={first.export.parent}", f"continue_from={tmp_path / 'h'}")
    saved = load_file(first.checkpoint / "model_1.safetensors")
    stage = make_stage(cfg, Accelerator(cpu=True))
    for key, value in stage.discriminator_states()["global_d"].items():
        torch.testing.assert_close(value, saved[key], rtol=1e-3, atol=1e-4, msg=key)
    assert train(cfg).step == 6 and sorted(logged(tmp_path / "c")) == [3, 4, 5, 6]
    with pytest.raises(ConfigError, match="stage 'prior'"):
        tiny(dataset, tmp_path / "d", *RUN, f"init_from={first.export.parent}", f"continue_from={tmp_path / 'h'}")
