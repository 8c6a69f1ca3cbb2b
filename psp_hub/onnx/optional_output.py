"""Make one output of an exported graph cost nothing unless asked: its own nodes move into an ONNX `If`.

onnxruntime runs every node of a graph whatever outputs the caller fetches (the bundled model's cached restore with
a second `contributions` output took 620-650 ms with only `image` fetched, against 440-480 ms for the graph without
that output, 1 thread). `gate_output` moves the nodes that only the optional output needs into the then-branch of
an `If` on a new scalar bool input; the else-branch gives zeros shaped like another value (e.g. the (B, K) mask), so
the output keeps its type and shape either way and one graph, one file, serves both kinds of call. The branch reads
the main graph's values and weights through the outer scope, so nothing is copied.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def _inputs(node: onnx.NodeProto) -> list[str]:
    """The names a node reads, including those its subgraphs (If/Loop/Scan bodies) read from the outer scope."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for inner in g.node:
                names += _inputs(inner)
    return names


def _needed(graph: onnx.GraphProto, targets: list[str]) -> set[int]:
    """Indices of the nodes that the values `targets` depend on."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    seen: set[int] = set()
    stack = [producer[t] for t in targets if t in producer]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack += [producer[n] for n in _inputs(graph.node[i]) if n in producer]
    return seen


def _own_casts(graph: onnx.GraphProto, moved: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Copies of the outer Casts whose outputs the moved nodes read, renamed and read instead. onnxruntime folds
    such a Cast into its consumers (reading its input) but cannot rename what a branch reads, and warns at every
    session start; a (B, K) mask cast twice costs nothing."""
    casts = {n.output[0]: n for n in graph.node if n.op_type == "Cast"}
    produced = {o for n in moved for o in n.output}
    read = [name for n in moved for name in n.input if name in casts and name not in produced]
    copies = {}
    for name in dict.fromkeys(read):
        node = onnx.NodeProto()
        node.CopyFrom(casts[name])
        node.name, node.output[0] = f"{node.name}_branch", f"{name}_branch"
        copies[name] = node
    for node in moved:
        node.input[:] = [copies[n].output[0] if n in copies else n for n in node.input]
    return [*copies.values(), *moved]


def _zeros_like_branch(like: str, output: onnx.ValueInfoProto, name: str) -> onnx.GraphProto:
    """A branch whose one output is zeros shaped like the value `like` (cast to float, minus itself)."""
    cast = helper.make_node("Cast", [like], [f"{name}_cast"], to=TensorProto.FLOAT)
    zero = helper.make_node("Sub", [f"{name}_cast", f"{name}_cast"], [name])
    out = onnx.ValueInfoProto()
    out.CopyFrom(output)
    out.name = name
    return helper.make_graph([cast, zero], f"{output.name}_skipped", [], [out])


def gate_output(proto: onnx.ModelProto, output: str, flag: str, like: str) -> bool:
    """Compute graph output `output` only when the new bool input `flag` is true (zeros shaped like `like` when
    false). Returns False, adding no input, when no node serves only `output` (it is free: nothing to gate)."""
    graph = proto.graph
    others = [o.name for o in graph.output if o.name != output]
    rest = _needed(graph, others)
    own = sorted(_needed(graph, [output]) - rest)
    if not own:
        return False
    inner = f"{output}_computed"
    moved = []
    for i in own:
        node = onnx.NodeProto()
        node.CopyFrom(graph.node[i])
        node.output[:] = [inner if n == output else n for n in node.output]
        node.input[:] = [inner if n == output else n for n in node.input]
        moved.append(node)
    produced = {n for node in moved for n in node.output}
    moved = _own_casts(graph, moved)
    out_info = next(o for o in graph.output if o.name == output)
    then_out = onnx.ValueInfoProto()
    then_out.CopyFrom(out_info)
    then_out.name = inner
    infos = [v for v in graph.value_info if v.name in produced]
    then_branch = helper.make_graph(moved, f"{output}_computed", [], [then_out], value_info=infos)
    else_branch = _zeros_like_branch(like, out_info, f"{output}_skipped")
    kept = [node for i, node in enumerate(graph.node) if i in rest]  # (dead nodes, if any, go too)
    gate = helper.make_node("If", [flag], [output], then_branch=then_branch, else_branch=else_branch)
    del graph.node[:]
    graph.node.extend([*kept, gate])
    remaining = [v for v in graph.value_info if v.name not in produced]
    del graph.value_info[:]
    graph.value_info.extend(remaining)
    graph.input.append(helper.make_tensor_value_info(flag, TensorProto.BOOL, []))
    return True
