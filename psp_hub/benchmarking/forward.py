"""Forward latency, throughput and peak memory (GPU allocated / CPU RSS) of PSP-GAN: `python -m psp_hub.benchmark [--device cuda]`.

Times the model with references encoded in the same call ("direct") and with a reference cache built
once ("cached"), for each batch size, reference count and dtype; prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from psp_hub import PSPGAN, PSPGANConfig, tiny_config
from psp_hub.benchmarking.peak_memory import PeakMemory
from psp_hub.pipeline.model_loading import pick_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _warm_up(fn, device: torch.device, warmup: int) -> None:
    """Untimed runs first: cuDNN's algorithm search (cudnn.benchmark) and lazy allocations happen here."""
    for _ in range(warmup):
        fn()
    _sync(device)


def _time(fn, device: torch.device, iters: int) -> float:
    """Median seconds of `fn()` over `iters` runs (device-synchronised)."""
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gflops_per_face(model: PSPGAN, refs: int, cached: bool) -> float:
    """GFLOP for one face (multiply-add = 2 FLOP), counted by torch's FLOP counter on CPU."""
    s = model.config.out_size
    lq, r = torch.zeros(1, 3, s, s), torch.zeros(1, refs, 3, s, s) if refs else None
    model_cpu = model.to("cpu", torch.float32)
    cache = model_cpu.encode_references(r) if cached and refs else None
    with FlopCounterMode(display=False) as counter:  # (its module hooks need autograd on)
        if cached:
            model_cpu.restore(lq, cache)
        else:
            model_cpu(lq, r)
    return counter.get_total_flops() / 1e9


def _model(args, device: torch.device) -> PSPGAN:
    """The model to time: the full-width config at `args.size` (or the CPU-sized one with --tiny), on `device`."""
    if args.tiny:
        config = tiny_config(args.size, fusion_direction=args.fusion_direction)
    else:
        config = PSPGANConfig(out_size=args.size, fusion_direction=args.fusion_direction)
    model = PSPGAN(config).eval()
    print(
        f"PSP-GAN {args.size} px, {model.num_parameters() / 1e6:.1f} M parameters, fusion {args.fusion_direction}, "
        f"device {device}, channels_last {args.channels_last}, compile {args.compile}"
    )
    if args.flops:
        for k in args.refs:
            print(
                f"  {k} refs: {gflops_per_face(model, k, cached=False):.1f} GFLOP/face direct, "
                f"{gflops_per_face(model, k, cached=True):.1f} GFLOP/face with cache"
            )
    model = model.to(device)
    if args.channels_last:
        for module in model.modules():  # 4-D conv weights only (the modulated convs keep a 5-D weight)
            if isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    return model


def _measure(args, model: PSPGAN, restore, device: torch.device, dtype_name: str, batch: int, k: int) -> list[dict]:
    """Latency, throughput and peak memory of one (dtype, batch, K): direct and with cached references."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    gen = torch.Generator(device="cpu").manual_seed(0)
    lq = (torch.rand(batch, 3, args.size, args.size, generator=gen) * 2 - 1).to(device)
    if args.channels_last:
        lq = lq.contiguous(memory_format=torch.channels_last)
    refs = (torch.rand(1, k, 3, args.size, args.size, generator=gen) * 2 - 1).to(device)
    refs_b = refs.expand(batch, -1, -1, -1, -1)
    rows = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype is torch.bfloat16)
    with torch.no_grad(), autocast:
        cache = model.encode_references(refs)
        modes = [("cached", lambda: restore(lq, cache))]
        if not args.cached_only:
            modes.insert(0, ("direct", lambda: model(lq, refs_b)))
        for mode, fn in modes:
            # peak of the timed runs only: warm-up includes cuDNN's algorithm search, whose trial
            # workspaces are not what a warmed-up model needs per call
            _warm_up(fn, device, args.warmup)
            with PeakMemory(device) as memory:
                sec = _time(fn, device, args.iters)
            rows.append(
                {
                    "dtype": dtype_name,
                    "batch": batch,
                    "refs": k,
                    "mode": mode,
                    "ms": sec * 1e3,
                    "faces_per_s": batch / sec,
                    "peak_mib": memory.mib,
                }
            )
            print(
                f"  {dtype_name} batch {batch:3d} refs {k} {mode:6s}: {sec * 1e3:9.2f} ms  {batch / sec:8.1f} "
                f"faces/s  peak {memory.mib:8.0f} MiB",
                flush=True,
            )
    return rows


def run(args) -> list[dict]:
    """Time every (dtype, batch, K) and print a markdown table; returns the rows."""
    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = _model(args, device)
    restore = model.restore
    if args.compile != "none":
        restore = torch.compile(model.restore, mode=None if args.compile == "default" else args.compile, dynamic=False)
    rows = [
        row
        for dtype_name in args.dtypes
        for batch in args.batches
        for k in args.refs
        for row in _measure(args, model, restore, device, dtype_name, batch, k)
    ]
    what = "allocated GPU memory" if device.type == "cuda" else "process RSS, weights included"
    print(f"\npeak MiB = {what}")
    print(
        "\n| dtype | batch | refs | references | latency (ms) | faces/s | peak MiB |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    for r in rows:
        print(
            f"| {r['dtype']} | {r['batch']} | {r['refs']} | {r['mode']} | {r['ms']:.2f} | {r['faces_per_s']:.1f} | {r['peak_mib']:.0f} |"
        )
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--refs", type=int, nargs="+", default=[1, 4])
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--fusion-direction", default="reference_query", choices=["reference_query", "input_query"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format for convs and inputs")
    p.add_argument(
        "--compile",
        default="none",
        choices=["none", "default", "reduce-overhead", "max-autotune"],
        help="torch.compile the cached restore path (reduce-overhead adds CUDA graphs)",
    )
    p.add_argument("--cached-only", action="store_true", help="time only the cached-reference path")
    p.add_argument("--tiny", action="store_true", help="the CPU-sized test config instead of the full-width one")
    p.add_argument("--flops", action="store_true", help="also count GFLOP per face (CPU, slow at 512 px)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
