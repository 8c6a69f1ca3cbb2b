"""A census of what a compiled training step would hand to inductor: every forward and backward graph, its size and
whether it has dynamic shapes, gathered on the CPU by a backend that runs the graphs as AOTAutograd traced them
(aot_eager: the same graphs, without inductor's codegen).

Inductor's compile time grows with the operators it lowers and with each graph's fixed cost, so the census predicts
a device warm-up before it is paid for: the compiled prior-256 step (6 graphs, 3,422 operators) took 154 s of
compilation on the H200; the psp-256 step, 2.7 times its size (15 graphs, 9,203 operators), had not finished its
warm-up after 470 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

CENSUS_BACKEND = "psp_census"


@dataclass(frozen=True)
class CensusGraph:
    """One graph: its dynamo compile id ("frame/variant"), "forward" or "backward", operators, symbolic inputs."""

    compile_id: str
    kind: str
    ops: int
    dynamic_inputs: int


@dataclass
class Census:
    """The graphs recorded so far, in compile order."""

    graphs: list[CensusGraph] = field(default_factory=list)

    @property
    def ops(self) -> int:
        return sum(g.ops for g in self.graphs)

    @property
    def dynamic(self) -> list[CensusGraph]:
        return [g for g in self.graphs if g.dynamic_inputs]


CENSUS = Census()  # the backend is registered once per process; reset `CENSUS.graphs` to start a count


def _symbolic(value) -> bool:
    if isinstance(value, torch.SymInt):
        return True
    return torch.is_tensor(value) and any(isinstance(d, torch.SymInt) for d in value.shape)


def _recorder(kind: str):
    def compiler(gm: torch.fx.GraphModule, example_inputs):
        compile_id = str(torch._guards.CompileContext.current_compile_id())
        ops = sum(1 for node in gm.graph.nodes if node.op == "call_function")
        symbolic = sum(1 for x in example_inputs if _symbolic(x))
        CENSUS.graphs.append(CensusGraph(compile_id, kind, ops, symbolic))
        return make_boxed_func(gm.forward)

    return compiler


def register_census_backend() -> str:
    """Register the census backend (once) and return its name, for `compile_backend=<name>`."""
    if CENSUS_BACKEND not in torch._dynamo.list_backends(exclude_tags=()):
        backend = aot_autograd(fw_compiler=_recorder("forward"), bw_compiler=_recorder("backward"))
        torch._dynamo.register_backend(backend, name=CENSUS_BACKEND)
    return CENSUS_BACKEND
