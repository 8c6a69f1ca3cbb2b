"""Two training processes on CPU (torchrun, gloo): disjoint data, identical weights after each step, and a
checkpoint written by the two-process run resumes in a one-process run (the path `accelerate launch --multi_gpu`
takes on GPUs, which this machine does not have)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.training import TrainConfig, train
from psp_hub.training.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train" / "configs" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("ddp-data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT, check=False)


def train_args(dataset: Path, out: Path, *overrides: str) -> list[str]:
    """train/train.py arguments for a short tiny-config run with no validation, images or tracker."""
    return [
        "--config",
        str(TINY),
        f"data.path={dataset}",
        f"output_dir={out}",
        "validate_every=0",
        "images_every=0",
        "tracker=none",
        *overrides,
    ]


@pytest.mark.parametrize(
    "compiled", [(), ("compile=true", "compile_backend=aot_eager", "compile_losses=true", "compile_r1=true")]
)
def test_two_processes_see_disjoint_data_and_stay_in_sync(dataset, tmp_path, compiled):
    """Eager, and with the losses and R1 compiled with the networks (DDP's modules traced inside the compiled
    functions)."""
    run = torchrun(str(ROOT / "tests" / "ddp_worker.py"), str(TINY), str(dataset), str(tmp_path), *compiled)
    assert run.returncode == 0, run.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert (r0["world"], r1["world"]) == (2, 2)
    assert r0["ids"] and r1["ids"] and not set(r0["ids"]) & set(r1["ids"])
    # gradients are averaged across ranks, so the weights (and the EMA of them) stay identical
    assert r0["generator"] == r1["generator"]
    assert r0["ema"] == r1["ema"]
    assert r0["discriminators"] == r1["discriminators"]


def test_two_process_checkpoint_resumes_in_one_process(dataset, tmp_path):
    out = tmp_path / "run"
    # learning-rate steps after step 2 and 3 of 3, so the schedule shows whether it counts optimizer steps
    args = train_args(dataset, out, "max_steps=3", "optim.decay_at=[0.5, 0.99]")
    run = torchrun(str(ROOT / "train" / "train.py"), "--max-steps-this-run", "2", *args)
    assert run.returncode == 0, run.stderr[-4000:]
    ckpt = latest_checkpoint(out)
    assert ckpt.name == "checkpoint-2"
    # one RNG state per process: the run really was one job over two processes, not two copies of it
    assert sorted(p.name for p in ckpt.glob("random_states_*.pkl")) == ["random_states_0.pkl", "random_states_1.pkl"]
    cfg = TrainConfig.from_yaml(TINY, args[2:])
    result = train(cfg, resume=True)
    assert result.step == 3 and result.checkpoint.name == "checkpoint-3" and result.export is not None
    # one schedule step per optimizer step on 2 processes and after the resume on 1 (accelerate's default would
    # step it once per process: halved after step 1 already)
    lr = {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "lr" in r}
    assert sorted(lr) == [1, 2, 3]
    assert (lr[2] / lr[1], lr[3] / lr[1]) == (pytest.approx(0.5), pytest.approx(0.25)), lr


def test_two_processes_train_past_the_end_of_the_unet_loss(dataset, tmp_path):
    """Regression: once `losses.unet_until` drops the U-Net loss (here after step 0 of 3) the RGB heads get no
    gradient; DDP (find_unused_parameters) must not wait for one, or step 2 dies ("Expected to have finished
    reduction in the prior iteration")."""
    args = train_args(dataset, tmp_path / "run", "max_steps=3", "losses.unet_until=0.3")
    run = torchrun(str(ROOT / "train" / "train.py"), *args)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "RESULT step=3 reason=finished" in run.stdout
