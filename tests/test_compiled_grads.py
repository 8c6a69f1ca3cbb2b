"""benchmarks/compiled_grads.py: fp32 eager and compiled gradients of the discriminator's pieces against fp64 on the
CPU (aot_eager here, a quick compile; on the device the same script checks inductor's and the GPU's kernels)."""

from __future__ import annotations

import json

import torch

from tests.benchmark_scripts import load_benchmark


def test_every_piece_is_within_fp32_rounding_of_fp64(capsys):
    bench = load_benchmark("compiled_grads")
    assert (
        bench.main(["--size", "16", "--narrow", "0.25", "--batch", "4", "--channels-last", "--backend", "aot_eager"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in result["rows"]]
    assert names == ["blur pad=(2, 2) stride=1", "blur pad=(1, 1) stride=2", "discriminator", "r1 (traced)"]
    assert result["args"]["channels_last"] and result["device"] == "cpu"
    for row in result["rows"]:
        for form in ("eager", "compiled"):
            assert set(row[form]) == {"output", "input_grad", "param_grads"}
            assert max(row[form].values()) < 1e-5, (row["name"], form, row[form])
    # the discriminator's own gradients are not empty (a zero-length vector would compare as exact)
    assert result["rows"][2]["eager"]["param_grads"] > 0 and result["rows"][3]["compiled"]["param_grads"] > 0


def test_relative_error_sees_a_wrong_gradient():
    """The measure the check rests on: a gradient on the wrong pixels is far off, a rounding-sized one is not."""
    bench = load_benchmark("compiled_grads")
    torch.manual_seed(0)
    reference = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    assert bench.relative_error(reference.float(), reference) < 1e-7
    assert bench.relative_error(reference.roll(1, dims=-1), reference) > 1.0
