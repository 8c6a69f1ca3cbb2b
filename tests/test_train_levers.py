"""The forms `benchmarks/train_levers.py` times must compute the same, or its timings compare different work: x2
upsampling (interpolate, its gather-form gradient, transposed conv, shifted slices) and the windowed fusion's two
forms, which the model picks between by device (shifted products on CUDA, einsums elsewhere), so CPU and GPU must
agree."""

from __future__ import annotations

import pytest
import torch

from psp_hub.models import PSPGAN, tiny_config
from tests.benchmark_scripts import load_benchmark

levers = load_benchmark("train_levers")


@pytest.mark.parametrize("form", ["gather-grad", "transposed", "slices"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 5, 7, 3), (2, 8, 16, 16)])
def test_upsampling_forms_match_interpolate(form, shape):
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    gout = torch.randn(shape[0], shape[1], shape[2] * 2, shape[3] * 2, dtype=torch.float64)
    want_out, want_grad = levers._grad_of(levers.UPSAMPLES["interpolate"], x, gout)
    out, grad = levers._grad_of(levers.UPSAMPLES[form], x, gout)
    assert out.shape == want_out.shape
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=0, atol=1e-12)


def test_windowed_fusion_forms_agree():
    torch.manual_seed(0)
    model = PSPGAN(tiny_config(out_size=64)).double()
    windowed = [m for m in model.fusion.values() if m.window is not None]
    assert windowed, "the tiny config must have a windowed fusion scale"
    module = windowed[0]
    size, kcount, b = 32, 3, 2
    with torch.no_grad():
        module.out.weight.normal_(0.0, 0.1)
        module.rel_bias.normal_(0.0, 0.5)
    x = torch.randn(b, module.channels, size, size, dtype=torch.float64)
    prepared = module.prepare(torch.randn(b, kcount, module.channels, size, size, dtype=torch.float64))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    results = []
    for form in ("einsum", "shifted"):
        levers._set_form(module, form)
        module.zero_grad()
        xg = x.clone().requires_grad_(True)
        out = module(xg, {k: v.detach() for k, v in prepared.items()}, mask, 1.0, None)
        out.pow(2).sum().backward()
        results.append((out.detach(), xg.grad, module.k.weight.grad.clone(), module.rel_bias.grad.clone()))
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert not torch.equal(results[0][0], x), "the fusion must change x here, or the comparison shows nothing"
    assert torch.count_nonzero(results[0][2]) > 0, "k must get a gradient, or its comparison shows nothing"


def test_shapes_option_times_only_the_upsampling(capsys):
    levers.main(["--device", "cpu", "--iters", "1", "--shapes", "1x2x4x4"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| upsample (1, 2, 4, 4)")]
    assert [row.split("|")[2].strip() for row in rows] == list(levers.UPSAMPLES)
    for row in rows:
        difference, eager_ms, compiled_ms = (float(cell) for cell in row.split("|")[3:6])
        assert difference < 1e-5 and eager_ms > 0 and compiled_ms > 0  # fp32 rounding, not a wrong form
