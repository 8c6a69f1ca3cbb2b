"""benchmarks/train_speed.py runs the real stage on random or real batches, profiles, and takes turns with a second
run; compare_speed.sh pairs this tree with a baseline tree and run_speed.py tabulates the pair."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert result["wall_ms_per_step"] > 0 and result["device"] == "cpu"
    assert result["kernels_per_step"] == 0 and result["gpu_busy_share"] is None  # no GPU here: nothing to count
    assert Path(result["code"]) == ROOT / "psp_hub"  # the package the numbers belong to


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
    assert result["loader"] == "resident" and not result["synthetic"] and result["samples_per_s"] > 0
    assert result["data_setup_s"] >= 0 and result["compile_s"] >= 0 and result["first_step_s"] > 0
    assert 0 <= result["data_wait_share"] < 1 and result["host_syncs_per_step"] is None  # counted on a GPU only


def test_compare_speed_pairs_two_trees_and_the_table_gives_the_ratio(tmp_path):
    """compare_speed.sh (what speed_all.sh runs per config) on the tiny prior, this tree against a copy of it as the
    baseline; then run_speed.py --table reads both results."""
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
        "NEW": f"--config train/configs/tiny-cpu.yaml --synthetic {tiny}",
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
