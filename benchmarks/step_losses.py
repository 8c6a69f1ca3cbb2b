"""A compiled training step against the eager one, step by step from the same state: the losses of each and how far
apart they are, and whether each step's weight update went the same way.

Timing cannot see a compiled step that trains wrongly. Under CUDA graphs (compile_mode=reduce-overhead) compiled
calls write into buffers that the next replay overwrites, so a value read too late, a step that does not mark its
start, or an update that misses the weights the graphs read would all show here. Two free-running runs cannot show
it: Adam turns rounding-sized gradient differences into whole steps (its first update is about lr times the
gradient's sign), and a GAN from scratch amplifies them within a step or two (prior-128 on the H200, bf16: g_gan
0.6193 against 0.6190 at step 0, 6.1 against 38.2 at step 1). So the two stages run in lockstep: before each step
the compiled one takes the eager one's weights and Adam moments (copied in place, where its graphs read them), both
draw the same random numbers (seeded per step; inductor draws as eager does, fallback_random) and see the same batch,
drawn once from the config's real loader. Per step and loss: the gap |compiled - eager| / (|eager| + 1e-3), expected
at rounding size (bf16 ~1e-3, fp32 ~1e-6); per network: the cosine between the two steps' weight updates (near 1;
0 where the compiled update did not land). `--control` pairs two eager stages instead: on a GPU its gaps and cosines
are the floor the compiled ones are read against. Prints one JSON line with every step's numbers and a summary.
DiffAugment (prior-256's `losses.diffaug`) draws its random numbers in a compiled graph's own order: check such a
config with `losses.diffaug=''`.

    python benchmarks/step_losses.py --config train/configs/prior-128.yaml --steps 24 init_from=null \
        compile_losses=true compile_mode=reduce-overhead
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch._inductor import config as inductor_config

from psp_hub.data import build_train_batches
from psp_hub.training import TrainConfig
from psp_hub.training.batches import batch_to_device
from psp_hub.training.stages import Stage, make_stage

# what needs compile, off for the eager stage
EAGER_ONLY = ["compile=false", "compile_losses=false", "compile_r1=false"]


def drawn_batches(cfg: TrainConfig, device, count: int) -> list[dict]:
    """The first `count` batches of the config's loader, kept, so that both stages see the very same ones."""
    prior = cfg.stage == "prior"
    loader = iter(build_train_batches(cfg.data, batch_size=cfg.batch_size, device=device, targets_only=prior))
    return [next(loader) for _ in range(count)]


def networks(stage: Stage) -> dict[str, torch.nn.Module]:
    """The stage's trained networks by name: the generator and each discriminator."""
    return {"generator": stage.raw_generator} | {
        f"discriminator{i}": stage.acc.unwrap_model(d) for i, d in enumerate(stage.discriminators)
    }


@torch.no_grad()
def copy_state(source: Stage, target: Stage) -> None:
    """`target`'s weights, buffers and Adam moments set to `source`'s, in place (compiled code, CUDA graphs included,
    keeps reading the same memory)."""
    targets = networks(target)
    for name, module in networks(source).items():
        targets[name].load_state_dict(module.state_dict())  # copies into the existing tensors
    # not Optimizer.load_state_dict: for tensors already of the parameter's dtype and device it keeps the source's own
    # (torch 2.x: both optimizers then shared one exp_avg), and the eager step would move the compiled one's moments
    for src, dst in ((source.opt_g, target.opt_g), (source.opt_d, target.opt_d)):
        src, dst = getattr(src, "optimizer", src), getattr(dst, "optimizer", dst)
        for group_src, group_dst in zip(src.param_groups, dst.param_groups, strict=True):
            for p_src, p_dst in zip(group_src["params"], group_dst["params"], strict=True):
                for key, value in src.state.get(p_src, {}).items():
                    mine = dst.state[p_dst].get(key)
                    dst.state[p_dst][key] = value.clone() if mine is None else mine.copy_(value)


def flat_weights(stage: Stage) -> dict[str, torch.Tensor]:
    """Each network's parameters as one fp32 vector (a copy)."""
    return {n: torch.cat([p.detach().float().flatten() for p in m.parameters()]) for n, m in networks(stage).items()}


def gap(compiled: float, eager: float) -> float:
    """How far a compiled loss is from eager's, relative to eager's size (a floor keeps losses near 0 from blowing
    up the ratio)."""
    return abs(compiled - eager) / (abs(eager) + 1e-3)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The cosine between two updates, in float64 (torch's fp32 `cosine_similarity` gave 0.99992 for an update of 88k
    weights with itself); 0 where either did not move."""
    a, b = a.double(), b.double()
    norms = a.norm() * b.norm()
    return float(a @ b / norms) if norms > 0 else 0.0


def one_step(stage: Stage, raw: dict, step: int, seed: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """`stage`'s step `step` on `raw` with its random numbers seeded; its logs and each network's weight update."""
    before = flat_weights(stage)
    set_seed(seed + step)
    logs = stage.step(batch_to_device(dict(raw), stage.acc.device, stage.cfg.channels_last), step)
    after = flat_weights(stage)
    return {k: float(v) for k, v in logs.items()}, {n: after[n] - before[n] for n in before}


def lockstep(eager: Stage, compiled: Stage, batches: list[dict], seed: int) -> list[dict]:
    """Both stages' steps from the same state, one per batch: the losses, their gaps and the updates' cosines."""
    rows = []
    for step, raw in enumerate(batches):
        copy_state(eager, compiled)
        logs_e, update_e = one_step(eager, raw, step, seed)
        with inductor_config.patch(fallback_random=True):
            logs_c, update_c = one_step(compiled, raw, step, seed)
        cosines = {n: cosine(update_c[n], update_e[n]) for n in update_e}
        gaps = {k: gap(logs_c[k], logs_e[k]) for k in logs_e if k in logs_c}
        rows.append({"eager": logs_e, "compiled": logs_c, "gaps": gaps, "update_cosine": cosines})
    return rows


def summary(rows: list[dict]) -> dict:
    """Over the steps: each loss's median and largest gap, each network's smallest update cosine, the count of
    non-finite compiled losses and the losses only one stage logged."""
    losses = sorted({k for r in rows for k in r["gaps"]})  # R1 and the U-Net term log on some steps only
    nets = sorted(rows[0]["update_cosine"])
    return {
        "median_gap": {k: statistics.median(r["gaps"][k] for r in rows if k in r["gaps"]) for k in losses},
        "max_gap": {k: max(r["gaps"][k] for r in rows if k in r["gaps"]) for k in losses},
        "min_update_cosine": {n: min(r["update_cosine"][n] for r in rows) for n in nets},
        "nonfinite": sum(not math.isfinite(v) for r in rows for v in r["compiled"].values()),
        "logged_by_one_only": sorted({k for r in rows for k in set(r["eager"]) ^ set(r["compiled"])}),
    }


def paired_stages(config: str, overrides: list[str], control: bool = False) -> tuple[Stage, Stage]:
    """The eager stage of `config` and the compiled one (`compile=true` and the overrides), built from the same seed
    (so with the same weights); with `control` a second eager one, whose gaps are the device's own (a GPU's
    non-deterministic kernels), the floor to read the compiled gaps against."""
    cfg_e = TrainConfig.from_yaml(config, ["tracker=none", *overrides, *EAGER_ONLY])
    cfg_c = cfg_e if control else TrainConfig.from_yaml(config, ["tracker=none", *overrides, "compile=true"])
    torch._dynamo.reset()
    acc = Accelerator(mixed_precision=cfg_c.mixed_precision if torch.cuda.is_available() else "no")
    stages = []
    for cfg in (cfg_e, cfg_c):
        set_seed(cfg.seed)
        stages.append(make_stage(cfg, acc))
    return stages[0], stages[1]


def run(config: str, steps: int, overrides: list[str], control: bool = False) -> dict:
    """Both stages of `config` in lockstep over `steps` batches of its loader: the summary and every step."""
    eager, compiled = paired_stages(config, overrides, control)
    cfg, acc = compiled.cfg, compiled.acc
    rows = lockstep(eager, compiled, drawn_batches(cfg, acc.device, steps), cfg.seed)
    return {
        "config_file": config,
        "control": control,
        "compile_options": cfg.compile_options if cfg.compile else None,
        "compile_losses": cfg.compile_losses,
        "compile_r1": cfg.compile_r1,
        "precision": acc.mixed_precision,
        "device": str(acc.device),
        "steps": steps,
        **summary(rows),
        "per_step": rows,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=16, help="steps (several R1 intervals exercise both step kinds)")
    p.add_argument("--control", action="store_true", help="eager against eager: the device's own floor of the gaps")
    p.add_argument("overrides", nargs="*", help="key=value overrides for both stages (compile is set per stage)")
    args = p.parse_args(argv)
    result = run(args.config, args.steps, args.overrides, args.control)
    for key, value in result["max_gap"].items():
        print(f"{key:>24}: gap median {result['median_gap'][key]:.2e}, max {value:.2e}", file=sys.stderr)
    for name, value in result["min_update_cosine"].items():
        print(f"{name:>24}: smallest update cosine {value:.6f}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
