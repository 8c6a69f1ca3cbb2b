"""A few steps of a real training run under torch.profiler (TrainConfig.profile_steps): where the step's GPU time goes,
on the real loader, schedule and compiled graphs, at no cost beyond those steps (a separate benchmark process would
compile the psp-256 step again: 320 s on the H200)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .kernel_profile import profile_summary, profiler_activities, synchronize

# Steps of this run before profiling: past torch.compile's graphs (a compiled psp-256 run compiles its last within its
# first 15 steps), the loader's start and the first sample grid.
PROFILE_AFTER = 20


class StepProfiler:
    """Profiles run steps PROFILE_AFTER .. PROFILE_AFTER + steps - 1 once, then writes `profile.json` in out_dir."""

    def __init__(self, steps: int, out_dir: Path, device, write: bool = True, after: int = PROFILE_AFTER):
        self.steps, self.path, self.device = int(steps), Path(out_dir) / "profile.json", torch.device(device)
        self.write, self.after = write, int(after)
        self.prof, self.t0, self.summary = None, 0.0, None

    def before(self, run_step: int) -> None:
        """Call before this run's step `run_step` (0 = its first): starts the profiler at the first profiled one."""
        if self.steps > 0 and run_step == self.after:
            from torch.profiler import profile

            synchronize(self.device)
            self.prof = profile(activities=profiler_activities(self.device))
            self.prof.start()
            self.t0 = time.perf_counter()

    def after_step(self, run_step: int, train_step: int) -> str | None:
        """Call after the step: at the last profiled one, stop, write the summary and return a line for the log."""
        if self.prof is None or run_step != self.after + self.steps - 1:
            return None
        synchronize(self.device)
        wall = time.perf_counter() - self.t0
        self.prof.stop()
        self.summary = {"train_steps": [train_step - self.steps + 1, train_step]}
        self.summary |= profile_summary(self.prof, wall, self.steps)
        self.prof = None
        if self.write:
            self.path.write_text(json.dumps(self.summary, indent=2))
        s, host = self.summary, self.summary["host"]
        shares = ", ".join(f"{k} {v:.0%}" for k, v in s["gpu_time_shares"].items())
        return (
            f"profile of steps {s['train_steps'][0]}-{s['train_steps'][1]}: {s['wall_ms_per_step']} ms a step, GPU busy "
            f"{s['gpu_busy_ms_per_step']} ms ({shares or 'no GPU kernels'}), {s['kernels_per_step']} kernels; host: "
            f"{host['compiled_ms_per_step']} ms in {host['compiled_calls_per_step']} compiled calls, "
            f"{host['eager_ms_per_step']} ms in {host['eager_ops_per_step']} eager operators"
        )
