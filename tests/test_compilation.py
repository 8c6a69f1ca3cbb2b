"""Compiled training regions keep running compiled however many prepared modules share accelerate's wrapper, and
every compilation (forward frames and lazily compiled backward graphs) can be counted."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch._dynamo.exc import FailOnRecompileLimitHit

from psp_hub.training.compilation import compiled_view, watch_compiles


def _prepared_modules(n: int) -> list[nn.Module]:
    """Like the stage's generator and discriminators: prepared under bf16, so accelerate wraps every forward in
    the same autocast function (one code object for dynamo, with a guard on each module's autocast instance)."""
    acc = Accelerator(cpu=True, mixed_precision="bf16")
    torch.manual_seed(0)
    return list(acc.prepare(*[nn.Linear(4, 4) for _ in range(n)]))


def _run_each_with_and_without_grad(views) -> None:
    x = torch.randn(2, 4)
    for view in views:
        view(x)
        with torch.no_grad():
            view(x)


@pytest.fixture
def strict_dynamo(fresh_accelerator_state):
    """Fail loudly where dynamo would silently fall back to eager, with a fresh compile cache and a fresh accelerator
    state (the test's bf16 one is forgotten afterwards)."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=8):
        yield
    torch._dynamo.reset()


def test_plain_compile_of_six_prepared_modules_runs_out_of_recompiles(strict_dynamo):
    """The failure this guards against (12 entries on one code object against dynamo's default limit of 8)."""
    views = [torch.compile(m, backend="eager") for m in _prepared_modules(6)]
    with pytest.raises(FailOnRecompileLimitHit):
        _run_each_with_and_without_grad(views)


def test_compiled_views_of_six_prepared_modules_all_stay_compiled(strict_dynamo):
    modules = _prepared_modules(6)
    views = [compiled_view(m, backend="eager") for m in modules]
    _run_each_with_and_without_grad(views)  # raises FailOnRecompileLimitHit if any call fell back to eager
    x = torch.randn(3, 4)
    for view, module in zip(views, modules):
        torch.testing.assert_close(view(x), module(x))


def test_watch_compiles_counts_each_forward_and_backward_graph_while_open():
    torch._dynamo.reset()
    view = compiled_view(nn.Linear(4, 4), backend="aot_eager")
    with watch_compiles() as tally:
        for _ in range(2):  # the second call reuses both graphs
            view(torch.randn(2, 4)).sum().backward()
    assert tally.count == 2 and [e.split()[1] for e in tally.events] == ["forward", "backward"]
    assert tally.seconds > 0
    view(torch.randn(3, 4))  # a new batch size recompiles, outside the block: not counted
    assert tally.count == 2
    torch._dynamo.reset()


def test_watch_compiles_counts_cuda_graph_recordings_apart():
    """CUDA graph trees (compile mode reduce-overhead) announce each recording through dynamo's callbacks, the call
    below being the one `cudagraph_trees.record_function` makes: a recording, not a compilation."""
    trigger = torch._dynamo.callback.CallbackTrigger.CUDAGRAPH_RECORDING
    with watch_compiles() as tally, torch._dynamo.callback_handler.install_callbacks(trigger, "2/0"):
        pass
    assert (tally.count, tally.recordings, tally.settling) == (0, 1, 1)
    assert tally.events == ["2/0 record"] and tally.seconds == 0 and tally.recording_seconds >= 0
