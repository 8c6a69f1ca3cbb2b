"""Where a training step's work goes: GFLOP and dispatched-op count per phase, for one config, on any device.

The op count is the number of low-level tensor ops the step dispatches (about one GPU kernel launch each); with
the GFLOP it tells whether a step is bound by arithmetic or by launch/Python overhead, which decides how to make
it faster (bigger batches and fused kernels, or CUDA graphs / torch.compile). Runs on a real batch:

    python benchmarks/train_step_profile.py --config train/configs/psp-512.yaml batch_size=2 data.num_workers=0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from psp_hub.data import build_train_dataloader
from psp_hub.training import TrainConfig
from psp_hub.training.batches import batch_to_device
from psp_hub.training.stages import make_stage


class OpCounter(TorchDispatchMode):
    """Counts the ops that reach the backend (views and metadata-only ops included), by phase."""

    def __init__(self):
        super().__init__()
        self.phase = "other"
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[self.phase] += 1
        return func(*args, **(kwargs or {}))


class PhaseProfile:
    """Wraps the stage's pieces so each call is attributed to a phase (FLOPs, ops, seconds)."""

    def __init__(self, stage, device):
        self.stage, self.device = stage, device
        self.ops, self.flops = OpCounter(), FlopCounterMode(display=False)
        self.flop_by_phase: Counter = Counter()
        self.seconds: Counter = Counter()

    @contextmanager
    def phase(self, name: str):
        before = self.flops.get_total_flops()
        prev, self.ops.phase = self.ops.phase, name
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - t0
            self.flop_by_phase[name] += self.flops.get_total_flops() - before
            self.ops.phase = prev

    def instrument(self):
        """Attribute the objective's and the optimizers' work to phases by wrapping their methods."""
        stage = self.stage
        obj = stage.objective
        for name in ("generator_losses", "discriminator_losses"):
            setattr(obj, name, self._wrap(getattr(obj, name), name))
        stage._optimizer_step = self._wrap_optimizer(stage._optimizer_step)
        stage.ema_step = self._wrap(stage.ema_step, "ema")
        stage.generator.forward = self._wrap(stage.generator.forward, "generator_forward")

    def _wrap(self, fn, name):
        def wrapped(*a, **k):
            with self.phase(name):
                return fn(*a, **k)

        return wrapped

    def _wrap_optimizer(self, fn):
        def wrapped(loss, optimizer, *a, **k):
            which = "g" if optimizer is self.stage.opt_g else "d"
            with self.phase(f"{which}_backward_and_adam"):
                return fn(loss, optimizer, *a, **k)

        return wrapped


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--r1", action="store_true", help="profile a step with the lazy R1 penalty (every r1_every steps)")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    cfg = TrainConfig.from_yaml(a.config, a.overrides)
    cfg.prior_path = None
    acc = Accelerator(mixed_precision=cfg.mixed_precision if torch.cuda.is_available() else "no")
    set_seed(cfg.seed)
    stage = make_stage(cfg, acc)
    batch = batch_to_device(next(iter(build_train_dataloader(cfg.data, batch_size=cfg.batch_size))), acc.device)
    step = 0 if a.r1 else 1
    stage.step(batch, step)  # warm-up (allocator, cuDNN choice)
    prof = PhaseProfile(stage, acc.device)
    prof.instrument()
    with prof.flops, prof.ops, prof.phase("step_total"):
        stage.step(batch, step)
    total_flop = prof.flop_by_phase["step_total"]
    print(
        f"{cfg.output_dir}: {cfg.model.out_size} px, batch {cfg.batch_size}, R1 {'on' if a.r1 else 'off'}, "
        f"device {acc.device}, precision {acc.mixed_precision}"
    )
    print(
        "| phase | GFLOP | share | dispatched ops | seconds (timed with counters on) |\n| --- | --- | --- | --- | --- |"
    )
    for name in [n for n in prof.seconds if n != "step_total"] + ["step_total"]:
        flop = prof.flop_by_phase[name]
        ops = sum(prof.ops.counts.values()) if name == "step_total" else prof.ops.counts[name]
        print(f"| {name} | {flop / 1e9:.1f} | {flop / max(total_flop, 1):.0%} | {ops} | {prof.seconds[name]:.2f} |")
    print(
        f"ops outside the named phases: {prof.ops.counts['other']}; "
        f"GFLOP per sample: {total_flop / 1e9 / cfg.batch_size:.1f}"
    )


if __name__ == "__main__":
    main()
