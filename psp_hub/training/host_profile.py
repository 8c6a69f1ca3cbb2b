"""Where a training step's host time goes: running compiled graphs, or eager operators outside them (loss glue,
the eager R1 step, autograd's backward of that glue, optimizers, the data draw), each dispatched from Python.

On the H200 the compiled psp-256 step is host-bound (GPU busy 34-50 % of the step), so the GPU kernels alone cannot
say what to cut. torch.profiler's CPU events can: every outermost `aten::` operator outside a compiled region is one
eager dispatch (on a GPU, one or more launches), and the compiled regions' own CPU time is what running the graphs
costs the host. What is in neither is Python between them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

# record_function names torch gives compiled code: Dynamo's frame ("Torch-Compiled Region: 0/3") and AOTAutograd's
# forward and backward ("CompiledFunction", "autograd::engine::evaluate_function: CompiledFunctionBackward")
COMPILED_MARKERS = ("Torch-Compiled Region", "CompiledFunction")
CONTEXTS = ("forward", "backward", "optimizer")


class CpuEvent(Protocol):
    """The part of torch.profiler's FunctionEvent this reads."""

    name: str
    cpu_parent: CpuEvent | None
    cpu_time_total: float  # microseconds, children included


def is_compiled_marker(name: str) -> bool:
    """Whether a CPU event is compiled code's own range (its operators then are no eager dispatches)."""
    return any(marker in name for marker in COMPILED_MARKERS)


def _ancestors(event: CpuEvent) -> list[str]:
    """The names of the ranges around an event, innermost first."""
    names, parent = [], event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return names


def _context(ancestors: list[str]) -> str:
    """Which part of the step an eager operator belongs to: an optimizer step, autograd's backward, else the
    forward side (the step's own code: losses, augmentation, the data draw)."""
    if any(n.startswith("Optimizer.") for n in ancestors):
        return "optimizer"
    if any(n.startswith("autograd::engine") for n in ancestors):
        return "backward"
    return "forward"


def host_summary(events: Iterable[CpuEvent], steps: int, top: int = 25) -> dict:
    """Per step: compiled-region calls and their host ms, outermost eager `aten::` operators and their host ms (by
    context, and the `top` ones by name), from the CPU events of `steps` profiled steps."""
    compiled_calls, compiled_us = 0, 0.0
    eager: dict[tuple[str, str], list[float]] = {}
    for event in events:
        ancestors = _ancestors(event)
        inside_compiled = any(is_compiled_marker(n) for n in ancestors)
        if is_compiled_marker(event.name) and not inside_compiled:
            compiled_calls += 1
            compiled_us += event.cpu_time_total
        elif event.name.startswith("aten::") and not inside_compiled:
            if not any(n.startswith("aten::") for n in ancestors):  # an operator's own sub-operators count once
                eager.setdefault((event.name, _context(ancestors)), []).append(event.cpu_time_total)
    by_context = {c: {"ops_per_step": 0.0, "ms_per_step": 0.0} for c in CONTEXTS}
    for (_, context), times in eager.items():
        by_context[context]["ops_per_step"] += len(times) / steps
        by_context[context]["ms_per_step"] += sum(times) / 1e3 / steps
    ranked = sorted(eager.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {
        "compiled_calls_per_step": round(compiled_calls / steps, 1),
        "compiled_ms_per_step": round(compiled_us / 1e3 / steps, 1),
        "eager_ops_per_step": round(sum(len(t) for t in eager.values()) / steps, 1),
        "eager_ms_per_step": round(sum(sum(t) for t in eager.values()) / 1e3 / steps, 1),
        "eager_by_context": {c: {k: round(v, 1) for k, v in d.items()} for c, d in by_context.items()},
        "top_eager_ops": [
            {
                "name": name,
                "context": context,
                "calls_per_step": round(len(t) / steps, 1),
                "ms_per_step": round(sum(t) / 1e3 / steps, 2),
            }
            for (name, context), t in ranked
        ],
    }


def cpu_events(prof) -> list:
    """The CPU-side events of a finished torch.profiler run (operators, record_function ranges)."""
    from torch.autograd import DeviceType

    return [e for e in prof.events() if e.device_type == DeviceType.CPU]
