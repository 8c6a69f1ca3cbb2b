"""The training loop shared by both stages: data phases, resumable checkpoints, logging, time budget.

Resuming is exact: the checkpoint holds models, optimizers, schedulers, EMA, RNG states (accelerate)
and the number of samples this process consumed, and the data stream restarts at that sample.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from psp_hub.data import build_train_dataloader

from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .divergence import TrainingDiverged, nonfinite_terms
from .stages import make_stage
from .visuals import restoration_grid, save_grid


@dataclass
class RunResult:
    """How a call to `train` ended."""

    step: int
    reason: str  # "finished", "time budget", "interrupted"
    checkpoint: Path | None
    export: Path | None = None


class _StopFlag:
    """Set by SIGTERM/SIGINT, so the loop ends at the next step with a checkpoint instead of dying mid-write."""

    def __init__(self):
        self.set = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def _handler(self, signum, frame):
        self.set = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _phase_for(cfg: TrainConfig, step: int) -> tuple[str, int]:
    """('main' or 'boost', the step at which that phase's stream starts)."""
    boost_step = int(math.floor(cfg.data.boost_start * cfg.max_steps))
    if cfg.stage == "pspgan" and cfg.data.boost_start < 1.0 and step >= boost_step:
        return "boost", boost_step
    return "main", 0


def _batch_to(batch: dict, device) -> dict:
    return {k: (_batch_to(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in batch.items()}


def train(cfg: TrainConfig, *, resume: bool = False, max_minutes: float | None = None, push_to_hub: bool = False,
          max_steps_this_run: int | None = None, export: bool = False) -> RunResult:
    """Run (or continue) a training run until max_steps, the time budget, a stop signal, or this run's step cap."""
    t_start = time.monotonic()
    out_dir = Path(cfg.output_dir)
    # without `cpu=True` accelerate never sets up a CPU process group, so `torchrun` on a GPU-less host would run
    # N unsynchronised copies of the job racing on one output folder
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision if torch.cuda.is_available() or cfg.mixed_precision == "no" else "no",
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=None if cfg.tracker == "none" else cfg.tracker,
        project_dir=str(out_dir),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # our schedules count optimizer steps, which every process takes once: accelerate's default would step them
        # once per process (N x too fast on N GPUs, and a checkpoint would not resume on another process count)
        step_scheduler_with_optimizer=False,
    )
    set_seed(cfg.seed, device_specific=True)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    if cfg.tracker != "none":
        accelerator.init_trackers("psp-gan", config={k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool))})

    stage = make_stage(cfg, accelerator)
    validator = None  # built before a resume: building it draws from the RNG that the checkpoint restores
    if cfg.stage == "pspgan" and cfg.validate_every > 0 and accelerator.is_main_process:
        from .validation import Validator

        validator = Validator(cfg.data, cfg.val_samples, accelerator.device, getattr(stage.objective.identity, "encoder", None))
    state = TrainState()
    accelerator.register_for_checkpointing(stage.ema, state)
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        load_checkpoint(accelerator, ckpt)
        stage.ema.to(accelerator.device)  # EMAModel.load_state_dict leaves its shadow copies on the CPU
        accelerator.print(f"resumed from {ckpt} at step {state.step}")

    per_step = cfg.batch_size * cfg.grad_accum
    phase, phase_start = _phase_for(cfg, state.step)
    loader = build_train_dataloader(cfg.data, batch_size=cfg.batch_size, phase=phase,
                                    start_sample=state.samples_seen - phase_start * per_step,
                                    process_index=accelerator.process_index, num_processes=accelerator.num_processes)
    batches = iter(loader)
    end_step = cfg.max_steps if max_steps_this_run is None else min(cfg.max_steps, state.step + max_steps_this_run)
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not accelerator.is_local_main_process, desc=cfg.stage)
    reason, step_times, wait_time, last_ckpt = "finished", [], 0.0, ckpt
    ckpt_seconds = 0.0

    with _StopFlag() as stop:
        while state.step < end_step:
            new_phase, phase_start = _phase_for(cfg, state.step)
            if new_phase != phase:  # the paper's final boost of older faces
                phase = new_phase
                loader = build_train_dataloader(cfg.data, batch_size=cfg.batch_size, phase=phase,
                                                start_sample=state.samples_seen - phase_start * per_step,
                                                process_index=accelerator.process_index, num_processes=accelerator.num_processes)
                batches = iter(loader)
            t0 = time.monotonic()
            logs = {}
            for _ in range(cfg.grad_accum):
                tw = time.monotonic()
                try:
                    batch = next(batches)
                except StopIteration:  # the stream ended (finite local data): start its next pass
                    batches = iter(loader)
                    batch = next(batches)
                wait_time += time.monotonic() - tw
                batch = _batch_to(batch, accelerator.device)
                with accelerator.accumulate(*_models(stage)):
                    logs = stage.step(batch, state.step)
                state.samples_seen += cfg.batch_size
            state.step += 1
            step_times.append(time.monotonic() - t0)
            bar.update(1)

            if state.step % cfg.log_every == 0 or state.step == end_step:
                scalars = {k: float(v) for k, v in logs.items()}
                scalars["lr"] = stage.sched_g.get_last_lr()[0]
                scalars["data_wait_share"] = wait_time / max(1e-9, sum(step_times))
                scalars["it_per_s"] = len(step_times) / max(1e-9, sum(step_times))
                accelerator.log(scalars, step=state.step)
                _append_jsonl(out_dir / "metrics.jsonl", {"step": state.step, **scalars}, accelerator)
                bar.set_postfix({k: f"{v:.3g}" for k, v in scalars.items() if k in ("g_total", "g_gan", "d_loss", "l1", "lr")})
            if cfg.images_every and state.step % cfg.images_every == 0 and accelerator.is_main_process:
                _log_images(stage, batch, accelerator, out_dir, state.step)
            if validator is not None and state.step % cfg.validate_every == 0:
                _validate(stage, validator, accelerator, state.step)

            checkpoint_due = state.step % cfg.checkpoint_every == 0 or state.step == end_step
            if state.step % cfg.log_every == 0 or checkpoint_due:  # NaN weights stay NaN, so this sampling catches it
                bad = nonfinite_terms(logs, accelerator)
                if bad:
                    bar.close()
                    raise TrainingDiverged(
                        f"step {state.step}: {', '.join(bad)} not finite; stopped without writing a checkpoint, so "
                        f"{last_ckpt or 'no checkpoint'} is the newest good one. Lower optim.lr / optim.d_lr or set "
                        f"optim.grad_clip, then --resume.")
            budget_hit = max_minutes is not None and (
                time.monotonic() - t_start + 2 * max(step_times[-20:]) + ckpt_seconds + 30 > max_minutes * 60)
            stop_now = stop.set or budget_hit
            if checkpoint_due or stop_now:
                tc = time.monotonic()
                last_ckpt = save_checkpoint(accelerator, out_dir, state.step, cfg.keep_checkpoints,
                                            extra={"samples_seen": state.samples_seen, "phase": phase})
                ckpt_seconds = time.monotonic() - tc
            if stop_now:
                reason = "interrupted" if stop.set else "time budget"
                break
    bar.close()

    exported = None
    if (state.step >= cfg.max_steps or export) and accelerator.is_main_process:
        target = cfg.export_dir or str(out_dir / "export")
        exported = stage.export(target, push_to_hub=push_to_hub, summary=f"{state.step} steps of batch {per_step}.")
        accelerator.print(f"exported EMA weights to {exported}")
    timing = {"steps_this_run": len(step_times), "seconds": sum(step_times),
              "it_per_s": len(step_times) / max(1e-9, sum(step_times)),
              "samples_per_s": len(step_times) * per_step * accelerator.num_processes / max(1e-9, sum(step_times)),
              "data_wait_share": wait_time / max(1e-9, sum(step_times))}
    if torch.cuda.is_available():  # this process's GPU; the processes of a DDP run hold the same replicas
        timing["peak_gpu_gib"] = torch.cuda.max_memory_allocated(accelerator.device) / 2**30
    accelerator.print(f"stopped at step {state.step} ({reason}); " + ", ".join(f"{k} {v:.3g}" for k, v in timing.items()))
    if accelerator.is_main_process:
        (out_dir / "last_run.json").write_text(json.dumps({"step": state.step, "reason": reason, **timing}, indent=2))
    accelerator.end_training()
    return RunResult(state.step, reason, last_ckpt, exported)


def _models(stage):
    return [stage.generator, *stage.discriminators]


def _log_images(stage, batch, accelerator, out_dir: Path, step: int) -> None:
    grid = restoration_grid(stage.sample_images(batch))
    folder = out_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    save_grid(grid, folder / f"step_{step:07d}.png")
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("samples", grid, step)


def _validate(stage, validator, accelerator, step: int) -> None:
    g = stage.raw_generator
    params = list(g.parameters())
    stage.ema.store(params)
    stage.ema.copy_to(params)
    metrics = validator(g)
    stage.ema.restore(params)
    accelerator.log(metrics, step=step)
    _append_jsonl(Path(accelerator.project_dir) / "metrics.jsonl", {"step": step, **metrics}, accelerator)
    accelerator.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def _append_jsonl(path: Path, record: dict, accelerator) -> None:
    """A plain-text copy of every logged scalar (readable without TensorBoard, e.g. from the device machine)."""
    if accelerator.is_main_process:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
