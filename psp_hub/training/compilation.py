"""torch.compile for the training step: enough room for every compiled region's variants, and inductor settings that
compute the right gradients.

Dynamo keeps compiled graphs per *code object* and silently falls back to eager after `recompile_limit` (8)
entries. Under mixed precision accelerate wraps every prepared module's forward in the same function, so the
generator and the four discriminators (each compiled for two or three grad states) shared one budget of 8, went
past it, and some of them ran eager (seen on the H200: "hit config.recompile_limit (8)", 8.7 k kernels a step).

Inductor's mix-order reduction (Triton only, on by default since torch 2.10) fuses two reductions of one tensor
along opposite dimensions into one kernel. Its last step drops the output's shape in torch 2.11: the prior-256
generator's backward failed on the H200 with "CompiledFunctionBackward returned an invalid gradient at index 30 -
got [256] but expected shape compatible with [1, 256, 1, 1]" (a StyleConv bias, whose sum over batch and pixels
meets the noise strength's per-pixel sum over channels of the same gradient; pytorch/pytorch#178080, fixed by a
`.view` that torch 2.14 has and 2.11 lacks). The same step still rebinds outputs that are views into a shared
buffer (silently wrong gradients, pytorch/pytorch#193061, not fixed in 2.14.1), so training compiles without it.

Every training shape is fixed by the config (a sample's native size is a tensor, not a shape), yet dynamo's default
("automatic dynamic") recompiled with symbolic sizes whenever one code object met a second shape: the perceptual
VGG at 128 px after 256 px, and a component discriminator after another one, since accelerate's forward wrapper is
one code object for all of them (compile_census, psp-256 at 256 px: 8 of 38 graphs had symbolic sizes). Symbolic
graphs cost inductor more and run slower, so training compiles with `dynamic=False`: one static graph per shape.

A graph compiles the first time its branch runs, not at start-up: `watch_compiles` counts those compilations and their
seconds, so a benchmark can warm up until they stop and show any that land in its timed window (one did on the
H200: the prior-256 compiled mean was 46 samples/s against a 148 ms median step, i.e. ~865 samples/s).

The compiled graphs can be carried to the next (fresh) machine instead of compiled again: `compile_cache.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

import torch
from torch import nn

# generator 1 entry (style mixing is a tensor select, one graph for every crossover: measured on the tiny CPU prior,
# nothing compiles after step 0), global D 2, each of 3 component Ds 3 (G step, no_grad style features, D step):
# ~16 in all
RECOMPILE_LIMIT = 64

# Setting this variable (0 or 1) leaves inductor's own choice alone, e.g. to measure the pass on a fixed torch.
MIX_ORDER_ENV = "TORCHINDUCTOR_MIX_ORDER_REDUCTION"
TRAINING_INDUCTOR_OPTIONS = {"triton.mix_order_reduction": False}


def _allow_recompiles() -> None:
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)


def training_compile_options(**options) -> dict:
    """torch.compile keyword arguments: static shapes (unless `dynamic` is given), and the training inductor settings
    merged in (inductor backend only).

    A `mode` becomes its inductor options, since torch.compile takes a mode or options, not both.
    """
    options = {"dynamic": False, **options}
    if options.get("backend", "inductor") != "inductor" or MIX_ORDER_ENV in os.environ:
        return options
    inductor = dict(options.pop("options", None) or {})
    mode = options.pop("mode", None)
    if mode is not None:
        inductor = {**torch._inductor.list_mode_options(mode, options.get("dynamic")), **inductor}
    options["options"] = {**inductor, **TRAINING_INDUCTOR_OPTIONS}
    return options


def compile_in_place(module: nn.Module, **options) -> nn.Module:
    """Compile `module` in place (its parameter names, state dict and checkpoints stay those of the eager module).

    `options` go to torch.compile (e.g. `backend`).
    """
    _allow_recompiles()
    module.compile(**training_compile_options(**options))
    return module


def run_eager():
    """A context in which compiled modules run their eager code: for the rare calls (sample images, validation) whose
    mode (eval, no_grad) or batch would otherwise compile a generator-sized graph of their own (three such compiles in
    the first validation cycle of the tiny psp-256 run; on the device, minutes each in the middle of a chunk)."""
    return torch.compiler.set_stance("force_eager")


def compiled_view(module: nn.Module | Callable, **options):
    """A compiled wrapper sharing `module`'s parameters (or a compiled function); `module` itself stays eager (e.g.
    for double backward)."""
    _allow_recompiles()
    return torch.compile(module, **training_compile_options(**options))


@dataclass
class CompileTally:
    """torch.compile's compilations so far: how many, their wall seconds, and each as "<frame>/<variant> forward" (a
    dynamo frame) or "... backward" (a backward graph, compiled lazily at its first backward). Under CUDA graph
    trees (compile mode reduce-overhead) a graph also records at the first runs of each new path through the step:
    counted apart as recordings ("... record"); on the H200 the priors' compiled R1 step still recorded in its 2nd
    and 3rd runs."""

    count: int = 0
    seconds: float = 0.0
    recordings: int = 0
    recording_seconds: float = 0.0
    events: list[str] = field(default_factory=list)

    @property
    def settling(self) -> int:
        """Compilations and recordings together: a step with either is not yet a steady one."""
        return self.count + self.recordings


@contextmanager
def watch_compiles(log: TextIO | None = None) -> Iterator[CompileTally]:
    """Tally the compilations (and CUDA graph recordings) that start while the block runs (nested ones once: dynamo's
    callbacks fire around the outermost compile only). With `log`, each one also writes a line as it starts and ends,
    so a run killed in its warm-up still shows how far it got."""
    tally, started = CompileTally(), [0.0, "forward"]  # the open event's start time and kind
    triggers = torch._dynamo.callback.CallbackTrigger
    kinds = {triggers.LAZY_BACKWARD: "backward", triggers.CUDAGRAPH_RECORDING: "record"}

    def start(args) -> None:
        started[:] = time.perf_counter(), kinds.get(args.callback_trigger, "forward")
        tally.events.append(f"{args.compile_id} {started[1]}")
        if started[1] == "record":
            tally.recordings += 1
        else:
            tally.count += 1
        if log is not None:
            print(f"compile {tally.settling}: {tally.events[-1]} ...", file=log, flush=True)

    def end(args) -> None:
        seconds = time.perf_counter() - started[0]
        if started[1] == "record":
            tally.recording_seconds += seconds
        else:
            tally.seconds += seconds
        if log is not None:
            line = f"compile {tally.settling}: {tally.events[-1]} {seconds:.1f} s (all {tally.seconds:.0f} s)"
            print(line, file=log, flush=True)

    handler = torch._dynamo.callback_handler
    handler.register_start_callback(start)
    handler.register_end_callback(end)
    try:
        yield tally
    finally:
        handler.remove_start_callback(start)
        handler.remove_end_callback(end)
