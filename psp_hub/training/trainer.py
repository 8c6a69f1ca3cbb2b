"""The training loop shared by both stages: data phases, resumable checkpoints, logging, time budget.

Resuming is exact: the checkpoint holds models, optimizers, schedulers, EMA, RNG states (accelerate)
and the number of samples this process consumed, and the data stream restarts at that sample.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from psp_hub.common.config import ConfigError
from psp_hub.data import build_train_batches, phase_at

from .batches import batch_to_device
from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from .compilation import CompileTally, run_eager, watch_compiles
from .config import TrainConfig
from .divergence import TrainingDiverged, nonfinite_terms
from .handover import Handover, adversarial_origin, components_trained, signature, write_handover
from .schedule import ema_weights
from .stages import make_stage
from .step_profile import StepProfiler
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


def phase_for(cfg: TrainConfig, step: int) -> tuple[str, int]:
    """('main' or 'boost', the step at which that phase's stream starts); the prior stage has no boost phase."""
    if cfg.stage != "pspgan":
        return "main", 0
    return phase_at(cfg.data, step, cfg.max_steps)


class BatchSource:
    """Device batches of the current data phase: rebuilds the stream at the boost boundary, times the wait."""

    def __init__(self, cfg: TrainConfig, accelerator, state: TrainState):
        self.cfg, self.acc, self.state = cfg, accelerator, state
        self.per_step = cfg.batch_size * cfg.grad_accum
        self.phase, self.batches, self.wait_s = None, None, 0.0

    def _open(self, phase: str, phase_start: int):
        cfg, acc = self.cfg, self.acc
        self.phase = phase
        self.batches = build_train_batches(
            cfg.data,
            batch_size=cfg.batch_size,
            phase=phase,
            start_sample=self.state.samples_seen - phase_start * self.per_step,
            process_index=acc.process_index,
            num_processes=acc.num_processes,
            device=acc.device,
            targets_only=cfg.stage == "prior",
        )

    def next(self) -> dict:
        """The next batch on the device (a new pass when a finite stream ends)."""
        phase, phase_start = phase_for(self.cfg, self.state.step)
        if phase != self.phase:  # the paper's final boost of older faces
            self._open(phase, phase_start)
        t0 = time.monotonic()
        try:
            batch = next(self.batches)
        except StopIteration:
            self._open(phase, phase_start)
            batch = next(self.batches)
        # the wait is the loader's alone: a pageable host-to-device copy would also wait for the queued GPU work
        self.wait_s += time.monotonic() - t0
        return batch_to_device(batch, self.acc.device, self.cfg.channels_last)


@dataclass
class _Timing:
    """Step and checkpoint times of this run, and the compiling seconds inside each step (torch.compile compiles a
    graph when its branch first runs: step 0 of a compiled psp-256 run is minutes of it, the steps after a fraction
    of a second)."""

    step_s: list[float] = field(default_factory=list)
    compile_s: list[float] = field(default_factory=list)
    ckpt_s: float = 0.0

    def add(self, seconds: float, compiling: float = 0.0) -> None:
        self.step_s.append(seconds)
        self.compile_s.append(compiling)

    def longest_recent_step(self) -> float:
        """The longest of the last 20 steps without its compiling: what the next steps may take (the time-budget
        check; a first step's compile would otherwise end the run 20 steps after it)."""
        return max(s - c for s, c in zip(self.step_s[-20:], self.compile_s[-20:]))

    def training_s(self) -> float:
        """The steps' seconds without their compiling: what speeds are measured over."""
        return max(1e-9, sum(self.step_s) - sum(self.compile_s))

    def summary(self, per_step: int, processes: int, wait_s: float) -> dict[str, float]:
        """Speeds over the steps' time without compiling (it shows apart as compile_s)."""
        total = self.training_s()
        return {
            "steps_this_run": len(self.step_s),
            "seconds": sum(self.step_s),
            "compile_s": sum(self.compile_s),
            "it_per_s": len(self.step_s) / total,
            "samples_per_s": len(self.step_s) * per_step * processes / total,
            "data_wait_share": wait_s / total,
        }


def _make_accelerator(cfg: TrainConfig, out_dir: Path) -> Accelerator:
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
        accelerator.init_trackers(
            "psp-gan", config={k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool))}
        )
    return accelerator


def _make_validator(cfg: TrainConfig, stage, accelerator):
    """The validator, or None; built before a resume, because building it draws from the RNG the checkpoint restores."""
    if cfg.validate_every <= 0 or not accelerator.is_main_process:
        return None
    if cfg.stage == "prior":
        from .prior_validation import PriorValidator

        return PriorValidator(cfg.data, cfg.val_samples, accelerator.device, cfg.seed)
    from .validation import Validator

    return Validator(cfg.data, cfg.val_samples, accelerator.device, getattr(stage.objective.identity, "encoder", None))


def _resume(accelerator, stage, out_dir: Path, state: TrainState) -> Path | None:
    ckpt = latest_checkpoint(out_dir)
    if ckpt is not None:
        load_checkpoint(accelerator, ckpt)
        stage.ema.to(accelerator.device)  # EMAModel.load_state_dict leaves its shadow copies on the CPU
        accelerator.print(f"resumed from {ckpt} at step {state.step}")
    return ckpt


def _continue(accelerator, cfg: TrainConfig, handover, state: TrainState, ckpt: Path | None) -> None:
    """Start the counters at the hand-over's step (the data stream where an unbroken run of this config would be);
    a resumed checkpoint wins when it is at or past that step, and one behind it is refused."""
    if ckpt is not None:
        if state.step < handover.step:
            raise ConfigError(
                f"--resume found {ckpt} at step {state.step}, behind continue_from's step {handover.step}: "
                f"move {cfg.output_dir} aside, or drop continue_from to resume it"
            )
        accelerator.print(f"continue_from {cfg.continue_from}: the checkpoint carries it further; not reloaded")
        return
    state.step, state.samples_seen = handover.step, handover.step * cfg.batch_size * cfg.grad_accum
    accelerator.print(
        f"continued from {cfg.continue_from} at step {state.step} "
        + ("(its discriminators; optimizers restart)" if handover.has_discriminators else "(discriminators fresh)")
    )


def _write_handover(cfg: TrainConfig, stage, step: int, export: Path | None) -> Path:
    """The hand-over a later run continues from (continue_from): discriminators, step, warm-up origin."""
    previous = stage.handover
    handover = Handover(
        step, signature(cfg), True, adversarial_origin(previous), components_trained(cfg, step, previous)
    )
    return write_handover(cfg.handover_dir, handover, stage.discriminator_states(), export)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    max_minutes: float | None = None,
    push_to_hub: bool = False,
    max_steps_this_run: int | None = None,
    export: bool = False,
) -> RunResult:
    """Run (or continue) a training run until max_steps, the time budget, a stop signal, or this run's step cap."""
    t_start = time.monotonic()
    out_dir = Path(cfg.output_dir)
    accelerator = _make_accelerator(cfg, out_dir)
    stage = make_stage(cfg, accelerator)
    validator = _make_validator(cfg, stage, accelerator)
    state = TrainState()
    accelerator.register_for_checkpointing(stage.ema, state)
    ckpt = _resume(accelerator, stage, out_dir, state) if resume else None
    if stage.handover is not None:
        _continue(accelerator, cfg, stage.handover, state, ckpt)
    end_step = cfg.max_steps if max_steps_this_run is None else min(cfg.max_steps, state.step + max_steps_this_run)
    loop = _Loop(cfg, accelerator, stage, state, validator, out_dir)
    reason, last_ckpt = loop.run(end_step, ckpt, deadline=None if max_minutes is None else t_start + max_minutes * 60)
    exported = None
    if (state.step >= cfg.max_steps or export) and accelerator.is_main_process:
        target = cfg.export_dir or str(out_dir / "export")
        exported = stage.export(
            target, push_to_hub=push_to_hub, summary=f"{state.step} steps of batch {loop.source.per_step}."
        )
        accelerator.print(f"exported EMA weights to {exported}")
        if cfg.handover_dir:
            accelerator.print(f"hand-over for continue_from: {_write_handover(cfg, stage, state.step, exported)}")
    timing = loop.timing.summary(loop.source.per_step, accelerator.num_processes, loop.source.wait_s)
    if torch.cuda.is_available():  # this process's GPU; the processes of a DDP run hold the same replicas
        timing["peak_gpu_gib"] = torch.cuda.max_memory_allocated(accelerator.device) / 2**30
    accelerator.print(
        f"stopped at step {state.step} ({reason}); " + ", ".join(f"{k} {v:.3g}" for k, v in timing.items())
    )
    if accelerator.is_main_process:
        (out_dir / "last_run.json").write_text(json.dumps({"step": state.step, "reason": reason, **timing}, indent=2))
    accelerator.end_training()
    return RunResult(state.step, reason, last_ckpt, exported)


class _Loop:
    """The steps of one run and what follows each: logs, images, validation, the divergence check, checkpoints."""

    def __init__(self, cfg: TrainConfig, accelerator, stage, state: TrainState, validator, out_dir: Path):
        self.cfg, self.acc, self.stage, self.state = cfg, accelerator, stage, state
        self.validator, self.out_dir = validator, out_dir
        self.source = BatchSource(cfg, accelerator, state)
        self.timing = _Timing()
        self.profiler = StepProfiler(cfg.profile_steps, out_dir, accelerator.device, accelerator.is_main_process)

    def run(self, end_step: int, last_ckpt: Path | None, deadline: float | None) -> tuple[str, Path | None]:
        """Step until `end_step`, a stop signal or the deadline; ('finished' or why not, the newest checkpoint)."""
        state, bar = (
            self.state,
            tqdm(
                total=self.cfg.max_steps,
                initial=self.state.step,
                disable=not self.acc.is_local_main_process,
                desc=self.cfg.stage,
            ),
        )
        reason = "finished"
        with _StopFlag() as stop:
            while state.step < end_step:
                self.profiler.before(len(self.timing.step_s))
                logs, batch = self._step()
                profiled = self.profiler.after_step(len(self.timing.step_s) - 1, state.step)
                if profiled:
                    self.acc.print(profiled)
                bar.update(1)
                self._report(logs, batch, bar, end_step)
                checkpoint_due = state.step % self.cfg.checkpoint_every == 0 or state.step == end_step
                if state.step % self.cfg.log_every == 0 or checkpoint_due:  # NaN weights stay NaN: sampling catches it
                    self._check_finite(logs, last_ckpt, bar)
                budget_hit = deadline is not None and (
                    time.monotonic() + 2 * self.timing.longest_recent_step() + self.timing.ckpt_s + 30 > deadline
                )
                if checkpoint_due or stop.set or budget_hit:
                    last_ckpt = self._checkpoint()
                if stop.set or budget_hit:
                    reason = "interrupted" if stop.set else "time budget"
                    break
        bar.close()
        return reason, last_ckpt

    def _step(self) -> tuple[dict, dict]:
        t0 = time.monotonic()
        logs, batch = {}, None
        with watch_compiles() if self.cfg.compile else nullcontext(CompileTally()) as compiled:
            for _ in range(self.cfg.grad_accum):
                batch = self.source.next()
                with self.acc.accumulate(self.stage.generator, *self.stage.discriminators):
                    logs = self.stage.step(batch, self.state.step)
                self.state.samples_seen += self.cfg.batch_size
        self.state.step += 1
        self.timing.add(time.monotonic() - t0, compiled.seconds + compiled.recording_seconds)
        return logs, batch

    def _report(self, logs: dict, batch: dict, bar, end_step: int) -> None:
        """Scalars every log_every steps (the only host syncs of a step), images, validation."""
        step, timing = self.state.step, self.timing
        if step % self.cfg.log_every == 0 or step == end_step:
            scalars = {k: float(v) for k, v in logs.items()}
            scalars["lr"] = self.stage.sched_g.get_last_lr()[0]
            scalars["data_wait_share"] = self.source.wait_s / timing.training_s()
            scalars["it_per_s"] = len(timing.step_s) / timing.training_s()
            self.acc.log(scalars, step=step)
            _append_jsonl(self.out_dir / "metrics.jsonl", {"step": step, **scalars}, self.acc)
            bar.set_postfix(
                {k: f"{v:.3g}" for k, v in scalars.items() if k in ("g_total", "g_gan", "d_loss", "l1", "lr")}
            )
        if self.cfg.images_every and step % self.cfg.images_every == 0 and self.acc.is_main_process:
            _log_images(self.stage, batch, self.acc, self.out_dir, step)
        if self.validator is not None and step % self.cfg.validate_every == 0:
            _validate(self.stage, self.validator, self.acc, step)

    def _check_finite(self, logs: dict, last_ckpt: Path | None, bar) -> None:
        bad = nonfinite_terms(logs, self.acc)
        if bad:
            bar.close()
            raise TrainingDiverged(
                f"step {self.state.step}: {', '.join(bad)} not finite; stopped without writing a checkpoint, so "
                f"{last_ckpt or 'no checkpoint'} is the newest good one. Lower optim.lr / optim.d_lr or set "
                f"optim.grad_clip, then --resume."
            )

    def _checkpoint(self) -> Path:
        tc = time.monotonic()
        path = save_checkpoint(
            self.acc,
            self.out_dir,
            self.state.step,
            self.cfg.keep_checkpoints,
            extra={"samples_seen": self.state.samples_seen, "phase": self.source.phase},
        )
        self.timing.ckpt_s = time.monotonic() - tc
        return path


def _log_images(stage, batch, accelerator, out_dir: Path, step: int) -> None:
    grid = restoration_grid(stage.sample_images(batch))
    folder = out_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    save_grid(grid, folder / f"step_{step:07d}.png")
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("samples", grid, step)


def _validate(stage, validator, accelerator, step: int) -> None:
    with ema_weights(stage.ema, stage.raw_generator) as g, run_eager():
        metrics = validator(g)
    accelerator.log(metrics, step=step)
    _append_jsonl(Path(accelerator.project_dir) / "metrics.jsonl", {"step": step, **metrics}, accelerator)
    accelerator.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def _append_jsonl(path: Path, record: dict, accelerator) -> None:
    """A plain-text copy of every logged scalar (readable without TensorBoard, e.g. from the device machine)."""
    if accelerator.is_main_process:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
