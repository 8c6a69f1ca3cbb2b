"""What a compiled training step's kernels move through memory, as inductor's scheduler counts it, on the CPU: per
compiled graph, the bytes read and written by inductor's own kernels (pointwise and reductions, fused) and by extern
kernels (convolutions and matmuls, by name), and the largest own kernels with the ops fused into them.

A GPU's pointwise kernels are bound by memory traffic, so the own kernels' bytes are what a change to the step's
elementwise work should reduce; the count comes from the same lowering and fusion rules on every backend (the GPU
may fuse a little differently), so it checks such a change before a device session measures its time. Runs the
real stage (every loss of the config on) on random batches of the config's shapes, fp32, and compiles with
inductor (`compile=true compile_backend=inductor` are forced; the other compile switches come from the config and
the overrides). The FX graph cache is off, so every graph is lowered and counted.

    python benchmarks/inductor_bytes.py --config train/configs/prior-128.yaml batch_size=8 init_from=null \
        compile_losses=true compile_r1=true
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch._functorch import config as functorch_config
from torch._inductor import config as inductor_config
from torch._inductor.scheduler import ExternKernelSchedulerNode, NopKernelSchedulerNode
from torch._inductor.virtualized import V
from train_speed import synthetic_batches  # a sibling script: random batches of the config's shapes

from psp_hub.training import TrainConfig
from psp_hub.training.batches import batch_to_device
from psp_hub.training.stages import make_stage

MB = 2**20  # MiB, written MB in the output and the docs


class GraphBytes(logging.Handler):
    """Collects inductor's per-graph metrics record (one per compiled graph, forward and backward)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.graphs: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        metrics = record.args  # logging hands a lone dict argument over as `args` itself
        if isinstance(metrics, dict) and "nodes_num_elem" in metrics:
            self.graphs.append(graph_summary(graph_name(), metrics["nodes_num_elem"]))


def graph_name() -> str:
    """The graph being lowered: dynamo's compile id, the traced function's name, forward or backward."""
    tracing = torch._guards.TracingContext.try_get()
    function = tracing.traced_code[0].co_name if tracing and tracing.traced_code else "?"  # then what it inlined
    direction = "backward" if getattr(V.graph, "is_backward", False) else "forward"
    return f"{torch._guards.CompileContext.current_compile_id()} {function} {direction}"


def fused_ops(node) -> str:
    """The first few ATen ops fused into one of inductor's own kernels."""
    origins = sorted({o.name for sub in node.get_nodes() if sub.node is not None for o in sub.node.origins})
    return "+".join(origins[:5]) + ("+..." if len(origins) > 5 else "")


def graph_summary(name: str, nodes_num_elem: list, top: int = 5) -> dict:
    """Bytes of one graph's scheduled kernels (inductor counts 4-byte elements), own against extern."""
    own, extern = [], Counter()
    for node, elements in nodes_num_elem:
        if isinstance(node, ExternKernelSchedulerNode):
            extern[getattr(node.node, "python_kernel_name", None) or type(node.node).__name__] += elements * 4
        elif not isinstance(node, NopKernelSchedulerNode):
            own.append((elements * 4, fused_ops(node)))
    own.sort(key=lambda t: -t[0])
    return {
        "graph": name,
        "own_kernels": len(own),
        "own_mb": round(sum(b for b, _ in own) / MB, 1),
        "extern_mb": round(sum(extern.values()) / MB, 1),
        "extern_mb_by_kernel": {k: round(v / MB, 1) for k, v in sorted(extern.items())},
        "largest_own": [{"mb": round(b / MB, 1), "ops": label} for b, label in own[:top]],
    }


@contextmanager
def counted_graphs() -> Iterator[list[dict]]:
    """Inside the block, every graph inductor lowers adds its `graph_summary` to the yielded list. The FX graph and
    AOT caches are off there: a cached graph is loaded, not lowered, so it would not be counted."""
    from torch._inductor import compile_fx

    metrics_log = compile_fx.inductor_metrics_log  # inductor counts a graph's bytes only when this logs INFO
    handler, level, propagate = GraphBytes(), metrics_log.level, metrics_log.propagate
    metrics_log.setLevel(logging.INFO)
    metrics_log.propagate = False  # the per-node lists are long: keep them off stderr
    metrics_log.addHandler(handler)
    try:
        with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
            yield handler.graphs
    finally:
        metrics_log.removeHandler(handler)
        metrics_log.setLevel(level)
        metrics_log.propagate = propagate


def totals(graphs: list[dict]) -> dict:
    """Own and extern bytes and own kernels over `graphs`."""
    return {
        "graphs": len(graphs),
        "own_mb": round(sum(g["own_mb"] for g in graphs), 1),
        "extern_mb": round(sum(g["extern_mb"] for g in graphs), 1),
        "own_kernels": sum(g["own_kernels"] for g in graphs),
    }


def count_step_bytes(cfg: TrainConfig, steps: int) -> dict:
    """Run `steps` compiled steps of the config's stage (step 0 has the R1 penalty) on random batches and count
    what every compiled graph moves."""
    acc = Accelerator(mixed_precision="no", cpu=True)
    set_seed(cfg.seed)
    stage = make_stage(cfg, acc)
    loader = synthetic_batches(cfg, acc.device)
    with counted_graphs() as graphs:
        for step in range(steps):
            stage.step(batch_to_device(next(loader), acc.device, cfg.channels_last), step)
    head = {"config": cfg.output_dir, "batch_size": cfg.batch_size, "out_size": cfg.model.out_size}
    return head | totals(graphs) | {"per_graph": graphs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=2, help="steps to run (step 0 has the R1 penalty)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    cfg = TrainConfig.from_yaml(
        args.config, ["tracker=none", *args.overrides, "compile=true", "compile_backend=inductor"]
    )
    print(json.dumps(count_step_bytes(cfg, args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
