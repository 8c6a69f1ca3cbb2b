"""Write a hand-over (training/handover.py) without a run: from an accelerate checkpoint still on a machine, or a
step-only one for an export that came back without its discriminators (they start fresh, the warm-up again there).

    python -m psp_hub.training.make_handover --config train/configs/psp-256.yaml --out OUT \
        (--checkpoint runs/psp-256/checkpoints/checkpoint-N | --step N) [--export EXPORT] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .config import TrainConfig
from .handover import (
    Handover,
    adversarial_origin,
    checkpoint_discriminators,
    components_trained,
    discriminator_names,
    read_handover,
    signature,
    write_handover,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the run's YAML (train/configs/...)")
    p.add_argument("--out", required=True, help="the hand-over folder to write")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="an accelerate checkpoint folder (runs/<run>/checkpoints/checkpoint-N)")
    source.add_argument("--step", type=int, help="a step-only hand-over: the discriminators start fresh there")
    p.add_argument("--export", help="the EMA export to pair it with (init_from of the continuation)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the YAML, as the run had them")
    args = p.parse_args(argv)
    cfg = TrainConfig.from_yaml(args.config, args.overrides)
    if args.checkpoint:  # the run that wrote it may itself have continued one: its warm-up began there
        step = int(json.loads((Path(args.checkpoint) / "meta.json").read_text())["step"])
        discs = checkpoint_discriminators(args.checkpoint, discriminator_names(cfg.stage))
        previous = read_handover(cfg.continue_from) if cfg.continue_from else None
        handover = Handover(
            step, signature(cfg), True, adversarial_origin(previous), components_trained(cfg, step, previous)
        )
    else:
        step, discs = args.step, None
        handover = Handover(step, signature(cfg), False, step)
    folder = write_handover(args.out, handover, discs, args.export)
    print(f"hand-over at step {step} in {folder}" + ("" if discs else " (no discriminators)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
