"""Make an onnx2torch graph compilable: Reshapes whose target shape is a stored constant become plain reshapes.

onnx2torch's `OnnxReshape` builds `torch.Size` from a shape *tensor* at every call, which torch.compile cannot
trace (dynamo graph-breaks or fails on it). In the shared MobileFaceNet every shape is a constant initializer
(PReLU slopes reshaped to (1, C, 1, 1), and the final (N, 192) squeeze), so each call can be replaced by
`torch.reshape(x, <python tuple>)`: the same function, with the shape known when the graph is built.
"""

from __future__ import annotations

import torch
from torch import fx


def _constant(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """The tensor a `get_attr` node reads, or None when the node is computed at run time."""
    if node.op != "get_attr":
        return None
    value = gm
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value if isinstance(value, torch.Tensor) else None


def make_reshapes_static(gm: fx.GraphModule) -> int:
    """Rewrite, in place, every onnx2torch Reshape with a constant shape; returns how many were rewritten.

    Shapes with a 0 (ONNX's "copy this input dimension") are left alone: their meaning depends on the input.
    """
    from onnx2torch.node_converters.reshape import OnnxReshape

    rewritten = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(str(node.target)), OnnxReshape):
            continue
        data, shape_node = node.args
        shape = _constant(gm, shape_node)
        if shape is None or (shape == 0).any():
            continue
        with gm.graph.inserting_before(node):
            static = gm.graph.call_function(torch.reshape, (data, tuple(int(v) for v in shape.tolist())))
        node.replace_all_uses_with(static)
        gm.graph.erase_node(node)
        rewritten += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return rewritten
