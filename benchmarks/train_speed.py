"""Training speed: iterations/s, samples/s, ms/step, peak GPU memory, the share of time spent waiting for data, the
start-up and compile time, and (with --profile) the GPU-busy share and the host's time split.

Runs the real stage (every loss of the config on) on the config's real loader (`data.loader`: the streaming
DataLoader or resident faces) for the warm-up and `--steps` timed steps and prints one JSON line per config. The
warm-up is at least `--warmup` steps and goes on (by whole R1 cycles) while a compiled step still compiles graphs
or records CUDA graphs; `compiles`/`compile_s` count all compilation, `recordings`/`recording_s` the CUDA graph
trees' recordings (compile_mode reduce-overhead), `timed_compiles`/`timed_recordings` any left inside the timed
window (then also on stderr). `--profile N` then runs N more steps under torch.profiler and prints the GPU's kernel
time per step against the unprofiled step time (well below it: the step is bound by the host, i.e. Python and
kernel launches; the busy share under the profiler, which slows the host, is a lower bound), the kernels launched
per step and those that take the most time, and under "host" where the host's time went: running compiled graphs,
or eager operators by part of the step (training/host_profile.py). `--compile-cache FILE` loads a compiled step's
graphs from an earlier machine and saves them after each compilation (training/compile_cache.py): the JSON then has
the file's size and the cache hits and misses.
Example (device GPU):

    python benchmarks/train_speed.py --config train/configs/psp-128.yaml --config train/configs/psp-512.yaml \
        --steps 40 data.path=data/psp-faces128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import psp_hub
from psp_hub.data import build_train_batches
from psp_hub.data.mixing import native_levels
from psp_hub.training import TrainConfig
from psp_hub.training.batches import batch_to_device
from psp_hub.training.compilation import watch_compiles
from psp_hub.training.compile_cache import cache_counts, carried_compile_cache
from psp_hub.training.compile_census import CENSUS, register_census_backend
from psp_hub.training.kernel_profile import profile_summary, profiler_activities, synchronize
from psp_hub.training.stages import make_stage


def synthetic_batches(cfg: TrainConfig, device):
    """Random images of the config's shapes with real eye/mouth boxes: the step's cost without a dataset, handed
    over where the configured loader hands its batches (`loader_placement`)."""
    from psp_hub.common.geometry import component_boxes, ffhq_template

    s, k, b = cfg.model.out_size, cfg.data.max_references, cfg.batch_size
    gen = torch.Generator().manual_seed(cfg.seed)
    boxes = torch.from_numpy(component_boxes(ffhq_template(s), s)).expand(b, 3, 4).clone()
    batch = {
        "lq": torch.rand(b, 3, s, s, generator=gen) * 2 - 1,
        "target": torch.rand(b, 3, s, s, generator=gen) * 2 - 1,
        "refs": torch.rand(b, k, 3, s, s, generator=gen) * 2 - 1,
        "ref_mask": torch.ones(b, k, dtype=torch.bool),
        "boxes": boxes,
    }
    levels = native_levels(cfg.data.out_size, cfg.data.sharp_threshold)
    if levels and cfg.stage == "pspgan":  # the mixed-resolution rule: both native sizes, and the GAN's own reals
        native = torch.tensor(levels).repeat(b)[:b]
        batch |= {"native_px": native, "gan_real": batch["target"].clone(), "gan_real_boxes": boxes.clone()}
    batch = loader_placement(batch, cfg.data, device)
    while True:
        yield batch


def loader_placement(batch: dict, data, device) -> dict:
    """`batch` where the real loader puts it: the resident loader makes its batches on the training device (so
    the step copies nothing; a pageable host batch instead cost the H200 a blocking 20-30 ms copy a step), the
    worker loader in host memory, pinned with `pin_memory`."""
    if data.loader == "resident":
        return {k: v.to(device) for k, v in batch.items()}
    if data.pin_memory and torch.cuda.is_available():
        return {k: v.pin_memory() for k, v in batch.items()}
    return batch


def _wait_for(paths: list[str], limit_s: float = 600.0) -> None:
    t0 = time.monotonic()
    while not all(os.path.exists(p) for p in paths):
        if time.monotonic() - t0 > limit_s:
            raise TimeoutError(f"waited {limit_s:.0f} s for {paths}")
        time.sleep(0.5)


def _touch(path: str | None) -> None:
    if path:
        open(path, "a").close()


def _batches(cfg: TrainConfig, synthetic: bool, device):
    if synthetic:
        return synthetic_batches(cfg, device)
    return build_train_batches(cfg.data, batch_size=cfg.batch_size, device=device, targets_only=cfg.stage == "prior")


class WarmupRule(NamedTuple):
    """When the warm-up may end. A compiled step compiles each graph the first time its branch runs (the lazy-R1
    step, the plain one, a style-mixing draw), and under CUDA graph trees records at the first runs of each path,
    so the warm-up runs at least `min_steps`, steps 0 (R1) and 1 (plain), and on until a step compiled (or recorded)
    nothing and the last R1 step did neither; it grows by whole R1 cycles, so the timed window holds as many R1
    steps as an eager run's. At `limit` steps it ends anyway: the timed window then counts the compiles left."""

    min_steps: int
    cycle: int = 1  # the lazy-regularisation interval (losses.r1_every)
    limit: int = 100

    def done(self, step: int, quiet_steps: int, r1_quiet: bool) -> bool:
        """May the timed window start at `step`, after `quiet_steps` steps in a row that compiled (and recorded)
        nothing, and with `r1_quiet` when the last R1 step did neither?"""
        if step >= self.limit:
            return True
        in_phase = step >= self.min_steps and (step - self.min_steps) % self.cycle == 0
        return in_phase and step >= min(2, self.cycle) and quiet_steps >= 1 and r1_quiet


def _timed_steps(stage, loader, cfg: TrainConfig, device, steps: int, rule: WarmupRule, signals: dict) -> dict:
    """Warm up (see WarmupRule), then time `steps` steps: each one's wall time, the time blocked on the loader, and
    the compilations (and CUDA graph recordings) during warm-up and during timing."""
    step_s, wait_s, t_warm = [], [], time.perf_counter()
    first_step_s, warmup_s, quiet_steps, r1_quiet, i = 0.0, 0.0, 0, False, 0
    with watch_compiles(log=sys.stderr) as watch:  # a line per compile: a run killed in its warm-up shows where
        while not rule.done(i, quiet_steps, r1_quiet):
            settling = watch.settling
            t0 = time.perf_counter()
            _one_step(stage, loader, cfg, device, i)
            first_step_s = first_step_s or time.perf_counter() - t0
            quiet = watch.settling == settling
            quiet_steps = quiet_steps + 1 if quiet else 0
            r1_quiet = quiet if stage.r1_due(i) else r1_quiet
            i += 1
        warmup_s, warmup_steps, warm, warm_events = time.perf_counter() - t_warm, i, _tally(watch), len(watch.events)
        _touch(signals.get("ready"))
        _wait_for(list(signals.get("wait_for", ())))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(warmup_steps, warmup_steps + steps):
            t0 = time.perf_counter()
            wait_s.append(_one_step(stage, loader, cfg, device, i))
            step_s.append(time.perf_counter() - t0)
    whole = _tally(watch)
    return {
        "step_s": step_s,
        "wait_s": wait_s,
        "warmup_s": warmup_s,
        "first_step_s": first_step_s,
        "warmup_steps": warmup_steps,
        **whole,
        **{f"timed_{k}": v - warm[k] for k, v in whole.items()},
        "timed_compile_events": watch.events[warm_events:],
    }


def _tally(watch) -> dict:
    """The compile watch's counts so far, by the names the result uses."""
    return {
        "compiles": watch.count,
        "compile_s": watch.seconds,
        "recordings": watch.recordings,
        "recording_s": watch.recording_seconds,
    }


def _one_step(stage, loader, cfg: TrainConfig, device, step: int) -> float:
    """One synchronised step; returns the seconds spent waiting for its batch."""
    synchronize(device)
    t0 = time.perf_counter()
    raw = next(loader)
    waited = time.perf_counter() - t0
    stage.step(batch_to_device(raw, device, cfg.channels_last), step)
    synchronize(device)
    return waited


def measure(
    cfg: TrainConfig,
    steps: int,
    warmup: int,
    synthetic: bool = False,
    profile: int = 0,
    ready: str | None = None,
    wait_for: list[str] = (),
    done: str | None = None,
    count_syncs: bool = False,
    max_warmup: int = 100,
    census: bool = False,
) -> dict:
    """Time `steps` optimisation steps (G and D) after at least `warmup` ones (more while graphs still compile, up
    to `max_warmup`); data wait is time blocked on the loader. compile_s is all compilation, warm-up and timed;
    timed_compiles > 0 means the timed mean includes compiling (the median is then the steady step's measure).
    """
    t_start = time.perf_counter()
    # a census keeps the config's precision on the CPU too: bf16 autocast decides some graphs' input dtypes
    acc = Accelerator(mixed_precision=cfg.mixed_precision if torch.cuda.is_available() or census else "no")
    set_seed(cfg.seed)
    stage = make_stage(cfg, acc)
    device = acc.device
    t_data = time.perf_counter()
    loader = _batches(cfg, synthetic, device)
    first = next(loader)  # opens the stream (or decodes the resident faces): start-up, not step time
    loader = _prepend(first, loader)
    data_setup_s = time.perf_counter() - t_data
    rule = WarmupRule(warmup, max(1, cfg.losses.r1_every), max(warmup, max_warmup))
    t = _timed_steps(stage, loader, cfg, device, steps, rule, {"ready": ready, "wait_for": wait_for})
    step_s, total, after = t["step_s"], sum(t["step_s"]), t["warmup_steps"] + steps
    median = _median(step_s)
    syncs = count_host_syncs(stage, loader, cfg, device, after) if count_syncs else None
    profiled = profile_steps(stage, loader, device, profile, after, cfg.channels_last) if profile else {}
    _touch(done)
    return {
        **_describe(cfg, stage, acc, synthetic),
        "steps": steps,
        "startup_s": round(t_data - t_start, 1),
        "data_setup_s": round(data_setup_s, 1),
        "warmup_steps": t["warmup_steps"],
        "warmup_s": round(t["warmup_s"], 1),
        "first_step_s": round(t["first_step_s"], 1),
        **_compilations(t),
        "it_per_s": round(steps / total, 2),
        "samples_per_s": round(steps * cfg.batch_size / total, 1),
        "ms_per_step_median": round(median * 1e3, 1),
        **_r1_split(step_s, t["warmup_steps"], stage.r1_due),
        "data_wait_share": round(sum(t["wait_s"]) / total, 3),
        **_peak_memory(device),
        "host_syncs_per_step": syncs,
        "code": os.path.dirname(psp_hub.__file__),
        "workers": cfg.data.num_workers,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **profiled,
    }


def _compile_phases(min_s: float = 0.05) -> dict[str, float]:
    """Seconds by compiler phase over this process (Dynamo's tracing, AOTAutograd, inductor's lowering, fusion,
    code generation and kernel builds; they nest): where a cold compile goes. On this CPU the tiny psp-256 recipe's
    inductor time was ~6 % graph passes and the rest code generation and C++ builds (docs/speed.md)."""
    names, seconds = torch._dynamo.utils.compile_times(repr="csv", aggregate=True)
    return {name: round(float(s), 2) for name, s in zip(names, seconds) if float(s) >= min_s}


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _r1_split(step_s: list[float], first_step: int, r1_due: Callable[[int], bool]) -> dict:
    """Median ms of the timed lazy-R1 steps and of the plain ones: what one R1 step costs above a plain step (the
    mean step hides it; prior-256's mean lay 35 ms above its median with r1_every 16)."""
    r1 = [s for i, s in enumerate(step_s, first_step) if r1_due(i)]
    plain = [s for i, s in enumerate(step_s, first_step) if not r1_due(i)]
    return {
        "r1_steps": len(r1),
        "ms_per_r1_step_median": round(_median(r1) * 1e3, 1) if r1 else None,
        "ms_per_plain_step_median": round(_median(plain) * 1e3, 1) if plain else None,
    }


def _peak_memory(device) -> dict:
    """The timed window's peak GPU memory: allocated, and reserved, which also holds the CUDA graphs' private pool
    (recorded in the warm-up; allocated leaves it out, so under reduce-overhead only reserved compares)."""
    if device.type != "cuda":
        return {"peak_mem_GiB": None, "peak_reserved_GiB": None}
    return {
        "peak_mem_GiB": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        "peak_reserved_GiB": round(torch.cuda.max_memory_reserved(device) / 2**30, 2),
    }


def _compilations(t: dict) -> dict:
    """All compilation and recording, and that inside the timed window (also on stderr: it makes the mean include
    compiling)."""
    if t["timed_compiles"] or t["timed_recordings"]:
        print(
            f"train_speed: {t['timed_compiles']} compilations ({t['timed_compile_s']:.1f} s) and "
            f"{t['timed_recordings']} CUDA graph recordings ({t['timed_recording_s']:.1f} s) in the timed window: "
            f"{t['timed_compile_events']}",
            file=sys.stderr,
            flush=True,
        )
    return {
        "compile_s": round(t["compile_s"], 1),
        "compile_phases_s": _compile_phases(),
        "compiles": t["compiles"],
        "timed_compiles": t["timed_compiles"],
        "timed_compile_s": round(t["timed_compile_s"], 1),
        "recordings": t["recordings"],
        "recording_s": round(t["recording_s"], 1),
        "timed_recordings": t["timed_recordings"],
        "timed_compile_events": t["timed_compile_events"],
    }


def _describe(cfg: TrainConfig, stage, acc, synthetic: bool) -> dict:
    """What was measured: the run, its size and the levers it used."""
    return {
        "config": cfg.output_dir,
        "stage": cfg.stage,
        "size": cfg.model.out_size,
        "batch": cfg.batch_size,
        "params_g_M": round(sum(p.numel() for p in stage.raw_generator.parameters()) / 1e6, 2),
        "precision": acc.mixed_precision,
        "compile": cfg.compile,
        "synthetic": synthetic,
        "loader": "synthetic" if synthetic else cfg.data.loader,
        "channels_last": cfg.channels_last,
        "fused_adam": cfg.optim.fused,
        "loss_nets_bf16": cfg.loss_nets_bf16,
        "compile_mode": cfg.compile_mode,
        "compile_losses": cfg.compile_losses,
        "compile_r1": cfg.compile_r1,
        "inductor_env": _inductor_env(),
        "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),  # shared by both sides of a SERIAL pair
    }


def _inductor_env() -> dict[str, str]:
    """Inductor settings this process got from its environment (e.g. TORCHINDUCTOR_CPP_WRAPPER=1, a lever timed
    against the same tree without it), the cache folder aside: a number is only comparable under the same ones."""
    return {
        k: v for k, v in sorted(os.environ.items()) if k.startswith("TORCHINDUCTOR_") and k != "TORCHINDUCTOR_CACHE_DIR"
    }


def census_summary(largest: int = 4) -> dict:
    """The census of the compiled regions (graphs, operators, those with symbolic sizes, the largest graphs)."""
    ranked = sorted(CENSUS.graphs, key=lambda g: -g.ops)[:largest]
    return {
        "census_graphs": len(CENSUS.graphs),
        "census_ops": CENSUS.ops,
        "census_dynamic_graphs": len(CENSUS.dynamic),
        "census_largest": [f"{g.compile_id} {g.kind} {g.ops}" for g in ranked],
    }


def _prepend(first, rest):
    yield first
    yield from rest


def count_host_syncs(stage, loader, cfg: TrainConfig, device, step: int) -> int | None:
    """Host-device synchronisations in one step (CUDA's sync debug mode warns once per sync); None off the GPU."""
    if device.type != "cuda":
        return None
    import warnings

    batch = batch_to_device(next(loader), device, cfg.channels_last)
    synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            stage.step(batch, step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def profile_steps(
    stage, loader, device, steps: int, first_step: int, channels_last: bool = False, top: int = 25
) -> dict:
    """Run `steps` more steps under torch.profiler; GPU busy time per step, kernel launches, the top kernels, and the
    host's time in compiled graphs and in eager operators."""
    from torch.profiler import profile

    synchronize(device)
    with profile(activities=profiler_activities(device)) as prof:
        t0 = time.perf_counter()
        for i in range(steps):
            stage.step(batch_to_device(next(loader), device, channels_last), first_step + i)
        synchronize(device)
        wall = time.perf_counter() - t0
    return profile_summary(prof, wall, steps, top)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="at least this many warm-up steps (more while compiling)")
    p.add_argument("--max-warmup", type=int, default=100, help="end the warm-up here even if graphs still compile")
    p.add_argument("--synthetic", action="store_true", help="random batches of the right shapes (no dataset needed)")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after timing, profile N more steps: GPU busy share and the top kernels",
    )
    # two benchmarks side by side on one GPU: both compile at once, then time one after the other, e.g.
    # A: --ready a.ready --wait-for b.ready --done a.done   B: --ready b.ready --wait-for a.done
    p.add_argument("--ready", help="touch this file when the warm-up steps are done")
    p.add_argument("--wait-for", action="append", default=[], help="after warm-up, wait until this file exists")
    p.add_argument("--done", help="touch this file when timing (and profiling) is done")
    p.add_argument("--count-syncs", action="store_true", help="count the host-device syncs of one step (GPU only)")
    p.add_argument(
        "--census",
        action="store_true",
        help="compile with the census backend (CPU is enough): the graphs and operators inductor would get",
    )
    p.add_argument(
        "--compile-cache",
        metavar="PATH",
        help="a torch.compile mega-cache file: loaded before the first step if there, saved after each compilation",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every config")
    args = p.parse_args(argv)
    with carried_compile_cache(args.compile_cache) as cache:
        for path in args.config:
            result = _measure_config(path, args)
            if cache is not None:  # hits and misses of the whole process so far, and the file as it is now
                size = cache.path.stat().st_size if cache.path.exists() else 0
                result |= {"compile_cache_MiB": round(size / 2**20, 2), "compile_cache_counts": cache_counts()}
            print(json.dumps({"config_file": path, **result}), flush=True)
    return 0


def _measure_config(path: str, args) -> dict:
    """`measure` one config file with the command line's options (and the census's result when asked)."""
    census = ["compile=true", f"compile_backend={register_census_backend()}"] if args.census else []
    cfg = TrainConfig.from_yaml(path, ["tracker=none", *args.overrides, *census])
    CENSUS.graphs.clear()
    result = measure(
        cfg,
        args.steps,
        args.warmup,
        args.synthetic,
        args.profile,
        args.ready,
        args.wait_for,
        args.done,
        args.count_syncs,
        args.max_warmup,
        args.census,
    )
    if args.census:
        result |= census_summary()
    return result


if __name__ == "__main__":
    sys.exit(main())
