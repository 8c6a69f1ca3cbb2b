"""Where a training step's GPU time goes: kernel time per step, the GPU-busy share and the time by kernel kind.

One summary for `benchmarks/train_speed.py --profile` and the trainer's `profile_steps` (a few profiled steps inside
a real training chunk). The kinds answer the throughput question directly: a step bound by convolutions and matmuls
is doing useful work; one bound by copies (layout conversions, `direct_copy`) and elementwise kernels is not.
"""

from __future__ import annotations

import re

import torch

from .host_profile import cpu_events, host_summary

# Inductor names a fused kernel after every op inside it (`triton_poi_fused_add_convolution_mul_0` is a bias add), so
# its prefix says the kind: pointwise, reduction / persistent reduction, or a matmul/conv template.
TRITON_KINDS = {
    "triton_poi_": "elementwise",
    "triton_red_": "reduction",
    "triton_per_": "reduction",
    "triton_tem_": "conv_matmul",
}
# Other kernels by name, first match wins: ATen, cuDNN, cuBLAS, CUTLASS and MAGMA names (the H200 profiles in
# docs/speed.md show `direct_copy_kernel_cuda`, sm90 implicit GEMM convolutions, `magma_sgemmEx`).
KERNEL_KINDS: tuple[tuple[str, re.Pattern], ...] = (
    ("communication", re.compile(r"nccl", re.IGNORECASE)),  # DDP's all-reduce: waiting on the other GPUs, not compute
    ("copy", re.compile(r"copy|memcpy|memset|nchwtonhwc|nhwctonchw|transpose|fill", re.IGNORECASE)),
    ("conv_matmul", re.compile(r"conv|gemm|xmma|cutlass|nvjet|wgrad|dgrad|fprop|cudnn|sm\d+_|bmm", re.IGNORECASE)),
    ("reduction", re.compile(r"reduce|softmax|norm|welford", re.IGNORECASE)),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled|pointwise|upsample|grid_sampler", re.IGNORECASE)),
)
KINDS = ("copy", "conv_matmul", "reduction", "elementwise", "communication", "other")


def kernel_kind(name: str) -> str:
    """The kind of a GPU kernel, from its name: one of KINDS."""
    triton = next((kind for prefix, kind in TRITON_KINDS.items() if name.startswith(prefix)), None)
    return triton or next((kind for kind, pattern in KERNEL_KINDS if pattern.search(name)), "other")


def kernel_summary(kernels: list[tuple[str, float]], wall_s: float, steps: int, top: int = 25) -> dict:
    """Summarise (name, device microseconds) of every GPU kernel of `steps` profiled steps that took `wall_s`.

    The busy share is a lower bound: the profiler slows the host, so the wall time per step grows.
    """
    busy_us = sum(us for _, us in kernels)
    by_name: dict[str, list[float]] = {}
    for name, us in kernels:
        by_name.setdefault(name, []).append(us)
    kind = {name: kernel_kind(name) for name in by_name}  # once per distinct name, not per launch
    shares = dict.fromkeys(KINDS, 0.0)
    for name, times in by_name.items():
        shares[kind[name]] += sum(times)
    ranked = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {
        "profiled_steps": steps,
        "wall_ms_per_step": round(wall_s * 1e3 / steps, 1),
        "gpu_busy_ms_per_step": round(busy_us / 1e3 / steps, 1),
        "gpu_busy_share": round(busy_us / 1e6 / wall_s, 3) if kernels else None,
        "kernels_per_step": round(len(kernels) / steps),
        "gpu_time_shares": {kind: round(us / busy_us, 3) for kind, us in shares.items()} if busy_us else {},
        "top_kernels": [
            {
                "ms_per_step": round(sum(t) / 1e3 / steps, 2),
                "calls_per_step": round(len(t) / steps, 1),
                "kind": kind[name],
                "name": name[:140],
            }
            for name, t in ranked
        ],
    }


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a CPU has none), so a timed or profiled window holds its own steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profiler_activities(device: torch.device) -> list:
    """torch.profiler's activities for a step on `device`: the host always, the GPU's kernels when there is one."""
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def gpu_kernels(prof) -> list[tuple[str, float]]:
    """(name, device microseconds) of every GPU kernel a finished torch.profiler run recorded."""
    from torch.autograd import DeviceType

    return [(e.name, e.device_time_total) for e in prof.events() if e.device_type == DeviceType.CUDA]


def profile_summary(prof, wall_s: float, steps: int, top: int = 25) -> dict:
    """A finished torch.profiler run of `steps` steps in `wall_s`: the GPU kernels' summary and, under "host",
    where the host's time went (host_profile.py)."""
    return kernel_summary(gpu_kernels(prof), wall_s, steps, top) | {"host": host_summary(cpu_events(prof), steps, top)}
