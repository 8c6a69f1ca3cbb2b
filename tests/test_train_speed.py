"""benchmarks/train_speed.py runs the real stage on random or real batches, profiles, and takes turns with a second
run; a compiled step is warmed up until its graphs stop compiling and any compile left in the timed window is
counted; compare_speed.sh pairs this tree with a baseline tree and run_speed.py tabulates the pair."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from psp_hub.training import TrainConfig
from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_speed():
    return load_benchmark("train_speed")


def test_measures_profiles_and_signals(train_speed, tmp_path):
    cfg = TrainConfig.from_yaml(
        ROOT / "train/configs/tiny-cpu.yaml", ["tracker=none", f"output_dir={tmp_path / 'run'}"]
    )
    ready, done = tmp_path / "ready", tmp_path / "done"
    result = train_speed.measure(
        cfg, steps=2, warmup=1, synthetic=True, profile=1, ready=str(ready), wait_for=[str(ready)], done=str(done)
    )
    assert ready.exists() and done.exists()
    assert result["steps"] == 2 and result["profiled_steps"] == 1 and result["it_per_s"] > 0
    assert result["wall_ms_per_step"] > 0 and result["device"] == "cpu" and result["peak_reserved_GiB"] is None
    assert result["kernels_per_step"] == 0 and result["gpu_busy_share"] is None  # no GPU here: nothing to count
    assert result["host"]["eager_ops_per_step"] > 0 and result["host"]["top_eager_ops"]
    assert Path(result["code"]) == ROOT / "psp_hub"  # the package the numbers belong to


@pytest.mark.parametrize(("loader", "on_device"), [("resident", True), ("workers", False)])
def test_synthetic_batches_come_where_the_configured_loader_puts_them(train_speed, loader, on_device):
    """The resident loader makes batches on the training device, so its synthetic stand-in must not make the step
    copy them from host memory; the worker loader's stay on the host ("meta" stands in for the GPU here)."""
    cfg = TrainConfig.from_yaml(ROOT / "train/configs/tiny-cpu.yaml", ["tracker=none", f"data.loader={loader}"])
    batch = next(train_speed.synthetic_batches(cfg, torch.device("meta")))
    assert batch["lq"].shape == (cfg.batch_size, 3, cfg.model.out_size, cfg.model.out_size)
    assert {v.device.type for v in batch.values()} == ({"meta"} if on_device else {"cpu"})


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


class _ShapeStage:
    """A stand-in stage whose step runs a compiled function on a tensor of `size(step)` elements, so it compiles
    (dynamic shapes off) exactly at the steps where the size is new; R1 every 4 steps."""

    def __init__(self, size):
        self.size, self.fn = size, torch.compile(_double, backend="eager", dynamic=False)

    def step(self, batch, step: int):
        return self.fn(torch.ones(self.size(step)))

    def r1_due(self, step: int) -> bool:
        return step % 4 == 0


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("size", "warmup_steps", "compiles", "timed_compiles"),
    [
        (lambda step: min(step, 3) + 1, 7, 4, 0),  # compiles at steps 0-3: the warm-up grows by one R1 cycle (4)
        # the R1 steps 0 and 4 compile (as the H200's R1 graph recorded CUDA graphs at its first runs): on to step 8
        (lambda step: 1 + (step == 0) + 2 * (step == 4), 11, 3, 0),
        (lambda step: 1 + (step == 9), 7, 2, 1),  # a plain branch first taken at step 9, in the timed window: counted
    ],
    ids=["compiling-at-steps-0-to-3", "r1-steps-compiling-twice", "new-branch-at-step-9"],
)
def test_warmup_lasts_until_nothing_compiles_and_compiles_left_are_counted(
    train_speed, fresh_dynamo, size, warmup_steps, compiles, timed_compiles
):
    rule = train_speed.WarmupRule(min_steps=3, cycle=4, limit=50)
    loader = itertools.repeat({"x": torch.zeros(1)})
    t = train_speed._timed_steps(_ShapeStage(size), loader, TrainConfig(), torch.device("cpu"), 4, rule, {})
    assert t["warmup_steps"] == warmup_steps and len(t["step_s"]) == 4
    assert t["timed_compiles"] == timed_compiles == len(t["timed_compile_events"])
    assert t["compiles"] == compiles and t["recordings"] == t["timed_recordings"] == 0  # no CUDA graphs on CPU
    assert t["compile_s"] >= t["timed_compile_s"] >= 0


def test_warmup_stops_at_its_limit_even_while_compiling(train_speed, fresh_dynamo):
    rule = train_speed.WarmupRule(min_steps=1, cycle=1, limit=5)
    loader = itertools.repeat({"x": torch.zeros(1)})
    t = train_speed._timed_steps(
        _ShapeStage(lambda step: step + 1), loader, TrainConfig(), torch.device("cpu"), 2, rule, {}
    )
    assert t["warmup_steps"] == 5 and t["timed_compiles"] == 2  # every step has a new shape


@pytest.mark.parametrize("stage", ["prior", "pspgan"])
def test_compiled_tiny_stage_has_no_compile_in_the_timed_window(train_speed, fresh_dynamo, tmp_path, stage):
    """The real stages compiled (aot_eager: dynamo and AOT autograd, the graphs inductor would get) on the tiny
    config: every graph compiles in the warm-up, the timed steps compile nothing (the prior with its default style
    mixing: one generator graph for every crossover and for steps without mixing)."""
    cfg = TrainConfig.from_yaml(
        ROOT / "train/configs/tiny-cpu.yaml",
        [
            "tracker=none",
            f"output_dir={tmp_path / 'run'}",
            f"stage={stage}",
            "compile=true",
            "compile_backend=aot_eager",
            "channels_last=true",
        ],
    )
    result = train_speed.measure(cfg, steps=2, warmup=1, synthetic=True)
    assert result["compiles"] >= 4 and result["compile_s"] > 0  # G forward and backward, D's two grad states
    phases = result["compile_phases_s"]  # where the compiling went, by phase (this backend: Dynamo and AOTAutograd)
    assert phases["_compile.compile_inner"] > 0 and phases["create_aot_dispatcher_function"] > 0
    assert result["timed_compiles"] == 0 and result["timed_compile_events"] == []
    # R1 every 2 steps: at least steps 0 (R1) and 1, then whole cycles from --warmup 1
    assert result["warmup_steps"] >= 2 and (result["warmup_steps"] - 1) % cfg.losses.r1_every == 0


def test_waiting_for_a_run_that_never_signals_times_out(train_speed, tmp_path):
    with pytest.raises(TimeoutError, match="never"):
        train_speed._wait_for([str(tmp_path / "never")], limit_s=0.2)


def test_measures_the_real_resident_loader_with_start_up_and_compile_times(train_speed, tmp_path, faces):
    from psp_hub.data.build.sample_corpus import build_sample_dataset

    dataset = build_sample_dataset(faces, tmp_path / "data")
    cfg = TrainConfig.from_yaml(
        ROOT / "train/configs/tiny-cpu.yaml",
        ["tracker=none", f"output_dir={tmp_path / 'run'}", f"data.path={dataset}", "data.loader=resident"],
    )
    result = train_speed.measure(cfg, steps=2, warmup=1)
    # samples/s is rounded to 0.1 and reads 0.0 when a tiny step takes over 40 s on a loaded machine: check the step
    assert result["loader"] == "resident" and not result["synthetic"] and result["ms_per_step_median"] > 0
    assert result["data_setup_s"] >= 0 and result["compile_s"] >= 0 and result["first_step_s"] > 0
    assert 0 <= result["data_wait_share"] < 1 and result["host_syncs_per_step"] is None  # counted on a GPU only


@pytest.mark.parametrize("serial", ["0", "1"])
def test_compare_speed_pairs_two_trees_and_the_table_gives_the_ratio(tmp_path, serial):
    """compare_speed.sh (what speed_all.sh runs per config) on the tiny prior, this tree against a copy of it as the
    baseline, one side with an environment of its own, side by side or one after the other (SERIAL=1, one inductor
    cache for both); it prints their row and ratio, and run_speed.py --table reads both results."""
    base = tmp_path / "baseline"
    shutil.copytree(ROOT / "psp_hub", base / "psp_hub", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "train" / "configs", base / "train" / "configs")
    (base / "benchmarks").mkdir()
    shutil.copy(ROOT / "benchmarks" / "train_speed.py", base / "benchmarks")
    out = tmp_path / "out"
    out.mkdir()
    tiny = "stage=prior batch_size=2"
    env = {
        **os.environ,
        "OUT": str(out),
        "BASELINE": str(base),
        "PYTHON": sys.executable,
        "TMPDIR": str(tmp_path),
        "NAME": "prior-128",
        "STEPS": "1",
        "WARMUP": "1",
        "PROFILE": "0",
        "LIMIT": "1200",
        "SERIAL": serial,
        "OLD_LIMIT": "1100",  # the second side's own cap
        "NEW": f"--config train/configs/tiny-cpu.yaml --synthetic {tiny}",
        "NEW_ENV": "TORCHINDUCTOR_CPP_WRAPPER=1",  # one side's environment (an eager run: no effect but the record)
        "OLD": f"--config {base}/train/configs/tiny-cpu.yaml --synthetic {tiny}",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "train/device/compare_speed.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    new, old = (json.loads((out / f"{side}-prior-128.json").read_text().splitlines()[-1]) for side in ("new", "old"))
    assert new["code"] == str(ROOT / "psp_hub") and old["code"] == str(base / "psp_hub")
    assert (
        new["inductor_env"].get("TORCHINDUCTOR_CPP_WRAPPER") == "1"
        and "TORCHINDUCTOR_CPP_WRAPPER" not in old["inductor_env"]
    )
    assert (new["inductor_cache_dir"] == old["inductor_cache_dir"]) == (serial == "1")
    printed = next(line for line in done.stdout.splitlines() if line.startswith("| prior-128 | new |"))
    assert printed.rstrip(" |").endswith(f"{new['samples_per_s'] / old['samples_per_s']:.2f}x")
    assert "psp-256" not in done.stdout  # only its own pair
    table = subprocess.run(
        [sys.executable, str(ROOT / "train/device/run_speed.py"), "--table", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line for line in table.splitlines() if line.startswith("| prior-128 | new |"))
    assert row.rstrip(" |").endswith(f"{new['samples_per_s'] / old['samples_per_s']:.2f}x")
    assert "| psp-256 | old | no result" in table
    assert subprocess.run(["bash", "-n", str(ROOT / "train/device/speed_all.sh")], check=False).returncode == 0


def test_r1_steps_are_timed_apart_from_plain_ones(train_speed):
    """Steps 16 and 32 of a window starting at step 3 are the R1 steps (r1_every 16); the rest are plain."""
    step_s = [0.1] * 40
    step_s[16 - 3] = step_s[32 - 3] = 0.7
    split = train_speed._r1_split(step_s, first_step=3, r1_due=lambda step: step % 16 == 0)
    assert split == {"r1_steps": 2, "ms_per_r1_step_median": 700.0, "ms_per_plain_step_median": 100.0}
