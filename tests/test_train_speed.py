"""benchmarks/train_speed.py runs the real stage on random batches, profiles, and can take turns with a second run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from psp_hub.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_speed():
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measures_profiles_and_signals(train_speed, tmp_path):
    cfg = TrainConfig.from_yaml(ROOT / "train/configs/tiny-cpu.yaml", ["tracker=none", f"output_dir={tmp_path / 'run'}"])
    ready, done = tmp_path / "ready", tmp_path / "done"
    result = train_speed.measure(cfg, steps=2, warmup=1, synthetic=True, profile=1,
                                 ready=str(ready), wait_for=[str(ready)], done=str(done))
    assert ready.exists() and done.exists()
    assert result["steps"] == 2 and result["profiled_steps"] == 1 and result["it_per_s"] > 0
    assert result["wall_ms_per_step"] > 0 and result["device"] == "cpu"
    assert result["kernels_per_step"] == 0 and result["gpu_busy_share"] is None  # no GPU here: nothing to count
    assert Path(result["code"]) == ROOT / "psp_hub"  # the package the numbers belong to


def test_waiting_for_a_run_that_never_signals_times_out(train_speed, tmp_path):
    with pytest.raises(TimeoutError, match="never"):
        train_speed._wait_for([str(tmp_path / "never")], limit_s=0.2)
