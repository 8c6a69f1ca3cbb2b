"""x2 resampling: the gather-form gradient compiled training uses equals `F.interpolate`'s, the slices form (a
benchmark lever) equals `F.interpolate` and keeps the input's memory format, the 2x2 mean is bilinear /2
downsampling, and no compiled backward of them holds a scatter (inductor's own decomposition of the bilinear forms
writes their gradients as accumulating `index_put`s)."""

from __future__ import annotations

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._functorch.aot_autograd import aot_module_simplified
from torch._inductor.decomposition import select_decomp_table
from torch.nn import functional as F

from psp_hub.models.resample import (
    downsample2x,
    upsample2x,
    upsample2x_gather_grad,
    upsample2x_slices,
    upsample2x_transpose,
)


def _interpolate_vjp(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (vjp,) = torch.autograd.grad(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), x, grad)
    return vjp


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 1, 2), (3, 2, 8, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_transpose_is_interpolates_gradient(shape, channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=fmt)
    grad = torch.randn(shape[0], shape[1], 2 * shape[2], 2 * shape[3], dtype=torch.float64)
    grad = grad.contiguous(memory_format=fmt)
    assert torch.allclose(upsample2x_transpose(grad), _interpolate_vjp(x, grad), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 1, 2), (3, 2, 8, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_slices_are_interpolation_and_keep_the_memory_format(shape, channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_(True)
    grad = torch.randn(shape[0], shape[1], 2 * shape[2], 2 * shape[3], dtype=torch.float64)
    out = upsample2x_slices(x)
    want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(out, want, rtol=0, atol=1e-12)
    (got_grad,) = torch.autograd.grad(out, x, grad)
    assert torch.allclose(got_grad, _interpolate_vjp(x, grad), rtol=0, atol=1e-12)
    assert out.is_contiguous(memory_format=fmt)
    assert out.is_contiguous() != channels_last


def test_slices_pass_gradgradcheck():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(upsample2x_slices, (x,))


def test_compiled_slices_backward_holds_no_scatter():
    x = torch.randn(2, 3, 6, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    ops = _backward_ops(upsample2x_slices, x)
    assert ops and not _scatters(ops), ops


def test_gather_grad_function_passes_gradcheck_and_gradgradcheck():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(upsample2x_gather_grad, (x,))
    assert torch.autograd.gradgradcheck(upsample2x_gather_grad, (x,))


def _recording_backend(ops: dict):
    """An aot_eager-style backend collecting the aten targets of every forward and backward graph inductor would
    get."""

    def backend(gm, example_inputs):
        def keep(kind):
            def compiler(graph, _inputs):
                ops.setdefault(kind, set()).update(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
                return make_boxed_func(graph.forward)

            return compiler

        return aot_module_simplified(
            gm, example_inputs, fw_compiler=keep("fw"), bw_compiler=keep("bw"), decompositions=select_decomp_table()
        )

    return backend


def _backward_ops(fn, *inputs: torch.Tensor) -> set[str]:
    """The aten targets of the backward graphs of `fn` compiled, for the gradient of its output's mean square."""
    ops: dict = {}
    torch.compile(fn, backend=_recording_backend(ops), dynamic=False)(*inputs).square().mean().backward()
    return ops["bw"]


def _scatters(ops: set[str]) -> bool:
    """Whether a graph's ops hold an accumulating index_put (inductor writes it as an atomic scatter)."""
    return any("index_put" in op for op in ops)


def test_compiled_training_upsample_gathers_and_matches_eager():
    """Compiled with a gradient wanted, `upsample2x`'s backward is the gather (no scatter, no slices' interleave),
    and it equals the eager interpolation."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad = torch.randn(2, 3, 12, 10)
    ops: dict = {}
    compiled = torch.compile(lambda t: upsample2x(t) * 2.0, backend=_recording_backend(ops), dynamic=False)
    out = compiled(x)
    (compiled_grad,) = torch.autograd.grad(out, x, grad)
    assert "aten.cat.default" not in ops["fw"] and "aten.stack.default" not in ops["fw"], ops["fw"]
    assert ops["bw"] and not _scatters(ops["bw"]), ops["bw"]
    eager_out = upsample2x(x) * 2.0
    (eager_grad,) = torch.autograd.grad(eager_out, x, grad)
    assert torch.allclose(out, eager_out, atol=1e-6)
    assert torch.allclose(compiled_grad, eager_grad, atol=1e-5)


def test_interpolations_own_compiled_backward_scatters():
    """The other side of the test above: without the gather form the backward is an accumulating index_put, so a
    change in inductor that gathers by itself shows here (and the custom gradient could go)."""
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    ops = _backward_ops(lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False), x)
    assert _scatters(ops), ops


def test_no_grad_and_eager_calls_take_plain_interpolation():
    x = torch.randn(1, 2, 3, 3)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.equal(upsample2x(x), expected)
    assert upsample2x(x.requires_grad_(True)).grad_fn.name() == "UpsampleBilinear2DBackward0"


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 5), (2, 4, 2, 3)])
def test_downsample_is_bilinear_half(shape):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    want = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    got = downsample2x(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    grad = torch.randn_like(want)
    (want_grad,) = torch.autograd.grad(want, x, grad)
    (got_grad,) = torch.autograd.grad(got, x, grad)
    assert torch.allclose(got_grad, want_grad, rtol=0, atol=1e-12)


def test_compiled_downsample_backward_holds_no_scatter():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    ops = _backward_ops(downsample2x, x)
    assert ops and not _scatters(ops), ops


@pytest.mark.slow
def test_compiled_generator_backward_holds_no_scatter_in_its_cuda_form():
    """The whole PSP-GAN generator (tiny), compiled, with the windowed fusion in the shifted-product form it takes on
    CUDA (on CPU its einsums unfold, and unfold's gradient is an index_put): no accumulating index_put is left in the
    backward graphs, so nothing in the generator's compiled gradient scatters on the device."""
    from psp_hub.models import PSPGAN, tiny_config

    torch.manual_seed(0)
    model = PSPGAN(tiny_config(out_size=64)).train()
    windowed = [m for m in model.fusion.values() if m.window is not None]
    assert windowed, "the tiny config must have a windowed fusion scale"
    for module in windowed:
        module._per_reference_windowed = module._per_reference_shifted
    lq = torch.rand(2, 3, 64, 64) * 2 - 1
    refs = torch.rand(2, 2, 3, 64, 64) * 2 - 1
    ops = _backward_ops(lambda *batch: model(*batch).image, lq, refs, torch.ones(2, 2, dtype=torch.bool))
    assert "aten.avg_pool2d_backward.default" in ops  # the U-Nets' downsampling, as a gather
    assert not _scatters(ops), sorted(ops)
