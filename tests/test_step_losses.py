"""benchmarks/step_losses.py: the compiled training step against eager, in lockstep from the same state, on the tiny
config's real loader (aot_eager here; on the device the same check covers inductor and CUDA graphs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from psp_hub.data.build.sample_corpus import build_sample_dataset
from tests.benchmark_scripts import load_benchmark

TINY = str(Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny-cpu.yaml")
PRIOR = ["stage=prior", "data.max_references=0"]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("step_losses")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("step-losses-data"))


def _overrides(dataset, tmp_path, *extra: str) -> list[str]:
    return [f"data.path={dataset}", f"output_dir={tmp_path}", "compile_backend=aot_eager", *extra]


@pytest.mark.parametrize(
    ("stage", "networks"), [("prior", 2), ("pspgan", 5)], ids=["prior", "pspgan"]
)  # pspgan: generator, global D, eyes and mouth Ds
def test_compiled_steps_match_eager_in_lockstep(bench, dataset, tmp_path, stage, networks):
    """Three steps (R1 at steps 0 and 2) with the losses compiled: every loss within rounding of eager's and every
    network's update pointing the same way."""
    extra = PRIOR if stage == "prior" else []
    result = bench.run(TINY, 3, _overrides(dataset, tmp_path, "compile_losses=true", *extra))
    assert result["compile_options"] == {"backend": "aot_eager"} and result["steps"] == len(result["per_step"]) == 3
    assert "r1" in result["per_step"][0]["reference"] and "r1" not in result["per_step"][1]["reference"]
    assert result["nonfinite"] == 0 and result["logged_by_one_only"] == []
    assert len(result["max_gap"]) >= (3 if stage == "prior" else 10)
    assert max(result["max_gap"].values()) < 1e-4, result["max_gap"]
    assert len(result["min_update_cosine"]) == networks
    assert min(result["min_update_cosine"].values()) > 0.999, result["min_update_cosine"]
    layers = result["per_step"][0]["layers"]
    assert {k.split("/")[0] for k in layers} == set(result["min_update_cosine"]) and len(layers) > 2 * networks
    assert len(result["lowest_layers"]) == 8 and min(result["lowest_layers"].values()) > 0.99, result["lowest_layers"]


def test_two_eager_stages_agree_exactly(bench, dataset, tmp_path):
    """--control (eager against eager): on this CPU the lockstep harness itself adds nothing, so every gap is 0 and
    every update cosine 1; on a GPU the same run measures its non-deterministic kernels' floor."""
    result = bench.run(TINY, 2, _overrides(dataset, tmp_path, *PRIOR), control=True)
    assert result["control"] is True and result["compile_options"] is None  # neither stage compiled
    assert result["reference"] == "eager"
    assert set(result["max_gap"]) == {"g_gan", "r1", "d_loss"} and max(result["max_gap"].values()) == 0.0
    assert min(result["min_update_cosine"].values()) == pytest.approx(1.0, abs=1e-9)


def test_a_compiled_reference_pairs_two_compiled_stages(bench, dataset, tmp_path):
    """--reference: the reference is the compiled config with the given overrides on top (here the losses left
    eager; on the device compile_mode=default against CUDA graphs), both compiled, agreeing to rounding."""
    overrides = _overrides(dataset, tmp_path, "compile_losses=true", *PRIOR)
    first, compiled = bench.paired_stages(TINY, overrides, reference=["compile_losses=false"])
    assert first.cfg.compile and not first.cfg.compile_losses and compiled.cfg.compile_losses
    result = bench.run(TINY, 2, overrides, reference=["compile_losses=false"])
    assert result["reference"] == ["compile_losses=false"] and result["logged_by_one_only"] == []
    assert max(result["max_gap"].values()) < 1e-4, result["max_gap"]
    assert min(result["min_update_cosine"].values()) > 0.999, result["min_update_cosine"]


def test_gradient_noise_moves_the_control_cosines_a_little(bench, dataset, tmp_path):
    """--control --grad-noise: bf16-sized noise on the second stage's gradients leaves the losses equal (they are
    computed before it) and turns the update cosines from exactly 1 to a little below."""
    result = bench.run(TINY, 2, _overrides(dataset, tmp_path, *PRIOR), control=True, grad_noise=4e-3)
    assert result["grad_noise"] == 4e-3 and max(result["max_gap"].values()) == 0.0
    cosines = result["min_update_cosine"].values()
    assert 0.95 < min(cosines) and max(cosines) < 0.99999, result["min_update_cosine"]


def test_bf16_on_cpu_changes_the_rounding(bench, dataset, tmp_path, fresh_accelerator_state):
    """--precision bf16 runs the CPU stages under bf16 autocast (the trainer keeps CPU in fp32): the same step's
    losses move off the fp32 ones by bf16 rounding, not more."""
    runs = {}
    for precision in ("no", "bf16"):
        fresh_accelerator_state()
        runs[precision] = bench.run(TINY, 1, _overrides(dataset, tmp_path, *PRIOR), control=True, precision=precision)
    assert runs["bf16"]["precision"] == "bf16" and runs["no"]["precision"] == "no"
    fp32, bf16 = (runs[p]["per_step"][0]["reference"] for p in ("no", "bf16"))
    assert all(bf16[k] != fp32[k] and bench.gap(bf16[k], fp32[k]) < 0.05 for k in fp32), (fp32, bf16)


def test_an_update_that_does_not_land_is_caught(bench, dataset, tmp_path):
    """The check can fail: a compiled stage whose generator update is lost has a generator update cosine of 0 while
    its discriminator's stays at 1."""
    eager, compiled = bench.paired_stages(TINY, _overrides(dataset, tmp_path, *PRIOR))
    compiled.opt_g.step = lambda *args, **kwargs: None
    batches = bench.drawn_batches(compiled.cfg, compiled.acc.device, 2)
    rows = bench.lockstep(eager, compiled, batches, compiled.cfg.seed)
    result = bench.summary(rows)
    assert result["min_update_cosine"]["generator"] == pytest.approx(0.0, abs=1e-6)
    assert result["min_update_cosine"]["discriminator0"] > 0.99
    layers = rows[0]["layers"]  # the per-layer view names the network that did not move
    assert all(v == 0.0 for k, v in layers.items() if k.startswith("generator/"))
    assert all(v > 0.99 for k, v in layers.items() if k.startswith("discriminator0/")), layers


def test_copy_state_carries_weights_and_adam_moments(bench, dataset, tmp_path):
    """After one eager step, copying gives the compiled stage the eager weights and Adam moments exactly."""
    eager, compiled = bench.paired_stages(TINY, _overrides(dataset, tmp_path, *PRIOR))
    batch = bench.drawn_batches(eager.cfg, eager.acc.device, 1)[0]
    bench.one_step(eager, batch, 0, 0)
    bench.copy_state(eager, compiled)
    for name, vector in bench.flat_weights(eager).items():
        assert torch.equal(bench.flat_weights(compiled)[name], vector), name
    src, dst = eager.opt_d.optimizer, compiled.opt_d.optimizer
    p_src, p_dst = src.param_groups[0]["params"][0], dst.param_groups[0]["params"][0]
    assert set(dst.state[p_dst]) == set(src.state[p_src]) >= {"exp_avg", "exp_avg_sq"}
    assert torch.equal(dst.state[p_dst]["exp_avg_sq"], src.state[p_src]["exp_avg_sq"])


@pytest.mark.parametrize(
    ("parameter", "layer"),
    [
        ("convs.3.conv.weight", "convs.3"),
        ("generator.style_convs.3.conv.weight", "generator.style_convs.3"),
        ("final_linear.weight", "final_linear"),
        ("style.mapping.scale", "style.mapping"),
        ("w_avg", "w_avg"),
    ],
)
def test_layer_of_groups_a_parameter_by_its_layer(bench, parameter, layer):
    assert bench.layer_of(parameter) == layer
