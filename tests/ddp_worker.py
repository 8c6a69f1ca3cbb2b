"""Run under `torchrun --nproc_per_node 2` (CPU, gloo) by test_multiprocess.py: two training steps of the tiny
config (plus any key=value overrides after the three paths), then each rank writes the ids it trained on and a
fingerprint of its generator, EMA and discriminators."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed

from psp_hub.data import build_train_dataloader
from psp_hub.training import TrainConfig
from psp_hub.training.batches import batch_to_device
from psp_hub.training.stages import make_stage


def main(config: str, dataset: str, out: str, *overrides: str) -> None:
    cfg = TrainConfig.from_yaml(config, [f"data.path={dataset}", "max_steps=100", "tracker=none", *overrides])
    acc = Accelerator(cpu=True)
    set_seed(cfg.seed, device_specific=True)  # different draws per rank, as in the trainer
    stage = make_stage(cfg, acc)
    loader = iter(
        build_train_dataloader(
            cfg.data, batch_size=cfg.batch_size, process_index=acc.process_index, num_processes=acc.num_processes
        )
    )
    ids = []
    for step in range(2):
        batch = next(loader)
        ids += list(batch["id"])
        with acc.accumulate(stage.generator, *stage.discriminators):
            stage.step(batch_to_device(batch, acc.device), step)
    g = stage.raw_generator
    shadow = stage.ema.shadow_params
    record = {
        "rank": acc.process_index,
        "world": acc.num_processes,
        "ids": ids,
        "generator": [float(p.double().sum()) for p in g.parameters()],
        "ema": [float(p.double().sum()) for p in shadow],
        "discriminators": [
            float(p.double().sum()) for d in stage.discriminators for p in acc.unwrap_model(d).parameters()
        ],
    }
    Path(out, f"rank{acc.process_index}.json").write_text(json.dumps(record))
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:])
