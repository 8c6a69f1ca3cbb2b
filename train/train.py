"""Train PSP-GAN or its StyleGAN2 prior: `accelerate launch train/train.py --config train/configs/<name>.yaml`.

Resumable: `--resume` continues from the newest complete checkpoint in the run's output folder;
`--max-minutes` ends the run cleanly with a checkpoint inside a time budget (e.g. a 10-minute device
command); `--compile-cache` carries a `compile=true` run's compiled graphs to the next machine;
`key=value` overrides change the YAML (e.g. `max_steps=200 data.path=data/psp-faces128`).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from psp_hub.common import ConfigError
from psp_hub.training import TrainConfig, train
from psp_hub.training.compile_cache import carried_compile_cache
from psp_hub.training.divergence import TrainingDiverged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML file under train/configs/")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.add_argument("--max-minutes", type=float, default=None, help="stop with a checkpoint before this many minutes")
    p.add_argument(
        "--max-steps-this-run", type=int, default=None, help="stop (with a checkpoint) after this many steps"
    )
    p.add_argument("--export", action="store_true", help="export the EMA weights at the end even before max_steps")
    p.add_argument(
        "--compile-cache",
        metavar="PATH",
        help="with compile=true: a torch.compile mega-cache file, loaded if there and saved after each compilation "
        "(a machine's file, like --max-minutes: not a recipe key)",
    )
    p.add_argument("--push-to-hub", action="store_true", help="push the exported model to hub_repo_id at the end")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the YAML")
    args = p.parse_args(argv)
    try:
        cfg = TrainConfig.from_yaml(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as err:  # a user's typo: one line, not a traceback
        print(f"config error: {err}", file=sys.stderr)
        return 2
    cache = args.compile_cache if cfg.compile else None
    try:
        with carried_compile_cache(cache, write=os.environ.get("RANK", "0") == "0"):  # one writer per machine
            result = train(
                cfg,
                resume=args.resume,
                max_minutes=args.max_minutes,
                push_to_hub=args.push_to_hub,
                max_steps_this_run=args.max_steps_this_run,
                export=args.export,
            )
    except ConfigError as err:  # e.g. a hand-over the run's checkpoint is behind: one line, not a traceback
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:  # a clear message and exit code, not a traceback
        print(f"TRAINING DIVERGED: {err}", file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") == "0":  # one line per run, not one per process
        print(f"RESULT step={result.step} reason={result.reason} checkpoint={result.checkpoint} export={result.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
