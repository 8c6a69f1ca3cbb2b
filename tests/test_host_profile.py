"""Where a profiled step's host time goes (training/host_profile.py): a real profiled CPU step with a compiled module,
eager glue around it and an optimizer, and the summary's arithmetic on hand-made events."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from psp_hub.training.host_profile import CONTEXTS, cpu_events, host_summary


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))

    def forward(self, x):
        return self.body(x)


def _profiled_steps(steps: int = 2) -> dict:
    """`steps` training steps of a compiled net with an eager head, an eager loss and Adam, profiled."""
    torch.manual_seed(0)
    net, head = _Net(), torch.nn.Linear(4, 1)
    compiled = torch.compile(net, backend="aot_eager", dynamic=False)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], foreach=True)

    def step():
        loss = (head(compiled(torch.randn(4, 8))) - 1.0).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # compiles, and Adam makes its state
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return host_summary(cpu_events(prof), steps)


def test_a_real_step_splits_into_compiled_calls_and_eager_operators():
    s = _profiled_steps()
    assert s["compiled_calls_per_step"] == 2.0  # the compiled forward and its compiled backward
    assert s["compiled_ms_per_step"] > 0
    eager = {(op["name"], op["context"]): op["calls_per_step"] for op in s["top_eager_ops"]}
    for name in ("aten::randn", "aten::linear", "aten::sub", "aten::square", "aten::mean"):
        assert eager.get((name, "forward")) == 1.0, (name, eager)
    # the compiled net's operators and an eager operator's own sub-operators are not eager dispatches
    assert not [name for name, _ in eager if name in ("aten::relu", "aten::addmm")], eager
    assert s["eager_by_context"]["backward"]["ops_per_step"] > 0  # the head's and the loss's gradients
    assert s["eager_by_context"]["optimizer"]["ops_per_step"] > 0
    assert list(s["eager_by_context"]) == list(CONTEXTS)
    total = sum(c["ops_per_step"] for c in s["eager_by_context"].values())
    assert abs(total - s["eager_ops_per_step"]) < 0.2


@dataclass
class _Event:
    name: str
    cpu_parent: _Event | None
    cpu_time_total: float


def test_the_summary_adds_up():
    region = _Event("Torch-Compiled Region: 0/0", None, 3000.0)
    inside = _Event("aten::convolution", region, 2000.0)  # an extern kernel a compiled graph calls
    add = _Event("aten::add", None, 500.0)
    add_child = _Event("aten::empty", add, 100.0)
    engine = _Event("autograd::engine::evaluate_function: MulBackward0", None, 900.0)
    grad = _Event("aten::mul", engine, 800.0)
    backward = _Event("autograd::engine::evaluate_function: CompiledFunctionBackward", None, 4000.0)
    adam = _Event("Optimizer.step#Adam.step", None, 700.0)
    fused = _Event("aten::_fused_adam_", adam, 600.0)
    s = host_summary([region, inside, add, add_child, engine, grad, backward, adam, fused] * 2, steps=2)
    assert s["compiled_calls_per_step"] == 2.0 and s["compiled_ms_per_step"] == 7.0
    assert s["eager_ops_per_step"] == 3.0 and s["eager_ms_per_step"] == 1.9
    assert s["eager_by_context"] == {
        "forward": {"ops_per_step": 1.0, "ms_per_step": 0.5},
        "backward": {"ops_per_step": 1.0, "ms_per_step": 0.8},
        "optimizer": {"ops_per_step": 1.0, "ms_per_step": 0.6},
    }
    first = s["top_eager_ops"][0]
    assert (first["name"], first["context"], first["ms_per_step"], first["calls_per_step"]) == (
        "aten::mul",
        "backward",
        0.8,
        1.0,
    )
