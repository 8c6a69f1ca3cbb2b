"""A compiled training step against a reference (eager, or another compiled form), step by step from the same
state: the losses of each and how far apart they are, and whether each step's weight update went the same way.

Timing cannot see a compiled step that trains wrongly. Under CUDA graphs (compile_mode=reduce-overhead) compiled
calls write into buffers that the next replay overwrites, so a value read too late, a step that does not mark its
start, or an update that misses the weights the graphs read would all show here. Two free-running runs cannot show
it: Adam turns rounding-sized gradient differences into whole steps (its first update is about lr times the
gradient's sign), and a GAN from scratch amplifies them within a step or two (prior-128 on the H200, bf16: g_gan
0.6193 against 0.6190 at step 0, 6.1 against 38.2 at step 1). So the two stages run in lockstep: before each step
the compiled one takes the reference's weights and Adam moments (copied in place, where its graphs read them), both
draw the same random numbers (seeded per step; inductor draws as eager does, fallback_random) and see the same batch,
drawn once from the config's real loader. Per step and loss: the gap |compiled - reference| / (|reference| + 1e-3),
expected at rounding size (bf16 ~1e-3, fp32 ~1e-6); per network: the cosine between the two steps' weight updates
(near 1; 0 where the compiled update did not land), and per layer, to find the part that moves differently. The
reference is the eager stage; `--control` pairs two eager stages; `--reference KEY=VALUE ...` pairs the compiled
stage with the compiled config plus those overrides (`--reference compile_mode=default`: CUDA graphs against plain
inductor, the same fused kernels, so any gap left is the graphs' own); `--control --grad-noise 4e-3` shows what
bf16-sized gradient noise alone does to the cosines (the tiny prior on CPU: 0.98-1.0). Prints one JSON line with
every step's numbers and a summary.
DiffAugment (prior-256's `losses.diffaug`) draws its random numbers in a compiled graph's own order: check such a
config with `losses.diffaug=''`. A gap says the two differ, not which is wrong: on the H200's torch 2.11 the eager side
was (a CUDA pooling backward kernel), and `compiled_grads.py`, against fp64 on the CPU, tells the two apart.

    python benchmarks/step_losses.py --config train/configs/prior-128.yaml --steps 24 init_from=null \
        compile_losses=true compile_mode=reduce-overhead [--reference compile_mode=default]
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


def layer_of(parameter: str) -> str:
    """A parameter's layer: its name up to the first list index ("convs.3", "generator.style_convs.3"), else its
    module's name, at most two parts deep ("final_linear", "style.mapping")."""
    parts = parameter.split(".")
    index = next((i for i, part in enumerate(parts[:-1]) if part.isdigit()), max(0, min(1, len(parts) - 2)))
    return ".".join(parts[: index + 1])


def layer_slices(stage: Stage) -> dict[str, dict[str, slice]]:
    """Where each layer's weights lie in its network's `flat_weights` vector (`named_parameters` yields a layer's
    parameters one after another)."""
    found = {}
    for net, module in networks(stage).items():
        layers, start = {}, 0
        for name, p in module.named_parameters():
            layer = layer_of(name)
            first = layers[layer].start if layer in layers else start
            layers[layer] = slice(first, start + p.numel())
            start += p.numel()
        found[net] = layers
    return found


def layer_cosines(update_c: dict, update_r: dict, slices: dict[str, dict[str, slice]]) -> dict[str, float]:
    """The update cosine of every layer ("generator/convs.3") that either stage moved (frozen layers are left out):
    which part of a network moved differently."""
    return {
        f"{net}/{layer}": cosine(update_c[net][where], update_r[net][where])
        for net, layers in slices.items()
        for layer, where in layers.items()
        if update_c[net][where].any() or update_r[net][where].any()
    }


def add_gradient_noise(stage: Stage, scale: float, seed: int) -> None:
    """Every gradient of `stage`'s networks gets Gaussian noise of `scale` times that gradient tensor's RMS (a model
    of rounding: bf16's relative step is 2^-8 = 3.9e-3), so a control run shows how far such noise alone moves the
    update cosines."""
    generator = torch.Generator().manual_seed(seed)

    def noisy(grad: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(grad.shape, generator=generator).to(grad)
        return grad + scale * grad.float().pow(2).mean().sqrt().to(grad) * noise

    for module in networks(stage).values():
        for p in module.parameters():
            p.register_hook(noisy)


def gap(compiled: float, reference: float) -> float:
    """How far a compiled loss is from the reference's, relative to its size (a floor keeps losses near 0 from
    blowing up the ratio)."""
    return abs(compiled - reference) / (abs(reference) + 1e-3)


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


def lockstep(reference: Stage, compiled: Stage, batches: list[dict], seed: int) -> list[dict]:
    """Both stages' steps from the same state, one per batch: the losses, their gaps and the updates' cosines."""
    rows, slices = [], layer_slices(reference)
    for step, raw in enumerate(batches):
        copy_state(reference, compiled)
        with inductor_config.patch(fallback_random=True):  # for a compiled reference too
            logs_r, update_r = one_step(reference, raw, step, seed)
            logs_c, update_c = one_step(compiled, raw, step, seed)
        cosines = {n: cosine(update_c[n], update_r[n]) for n in update_r}
        gaps = {k: gap(logs_c[k], logs_r[k]) for k in logs_r if k in logs_c}
        layers = layer_cosines(update_c, update_r, slices)
        rows.append({"reference": logs_r, "compiled": logs_c, "gaps": gaps, "update_cosine": cosines, "layers": layers})
    return rows


def lowest_layers(rows: list[dict], count: int = 8) -> dict[str, float]:
    """The `count` layers whose median update cosine over the steps is lowest, with that median."""
    names = {k for r in rows for k in r["layers"]}  # a layer that neither stage moved at a step is not in its row
    medians = {k: statistics.median(r["layers"][k] for r in rows if k in r["layers"]) for k in names}
    return dict(sorted(medians.items(), key=lambda item: item[1])[:count])


def summary(rows: list[dict]) -> dict:
    """Over the steps: each loss's median and largest gap, each network's smallest update cosine, the count of
    non-finite compiled losses and the losses only one stage logged."""
    losses = sorted({k for r in rows for k in r["gaps"]})  # R1 and the U-Net term log on some steps only
    nets = sorted(rows[0]["update_cosine"])
    return {
        "median_gap": {k: statistics.median(r["gaps"][k] for r in rows if k in r["gaps"]) for k in losses},
        "max_gap": {k: max(r["gaps"][k] for r in rows if k in r["gaps"]) for k in losses},
        "min_update_cosine": {n: min(r["update_cosine"][n] for r in rows) for n in nets},
        "lowest_layers": lowest_layers(rows),
        "nonfinite": sum(not math.isfinite(v) for r in rows for v in r["compiled"].values()),
        "logged_by_one_only": sorted({k for r in rows for k in set(r["reference"]) ^ set(r["compiled"])}),
    }


def paired_stages(
    config: str,
    overrides: list[str],
    control: bool = False,
    reference: list[str] | None = None,
    precision: str | None = None,
) -> tuple[Stage, Stage]:
    """The reference stage of `config` and the compiled one (`compile=true` and the overrides), built from the same
    seed (so with the same weights). The reference is eager; with `reference` overrides, the compiled config with
    those on top; with `control` the second stage is built as the reference is, so its gaps are the device's own (a
    GPU's non-deterministic kernels). `precision`: the autocast dtype, by default the config's on a GPU and fp32 on
    CPU ("bf16" there studies bf16 rounding without a GPU)."""
    compiled = ["tracker=none", *overrides, "compile=true"]
    cfg_r = TrainConfig.from_yaml(config, [*compiled, *reference] if reference else [*compiled, *EAGER_ONLY])
    cfg_c = cfg_r if control else TrainConfig.from_yaml(config, compiled)
    torch._dynamo.reset()
    on_gpu = torch.cuda.is_available()
    acc = Accelerator(mixed_precision=precision or (cfg_c.mixed_precision if on_gpu else "no"), cpu=not on_gpu)
    stages = []
    for cfg in (cfg_r, cfg_c):
        set_seed(cfg.seed)
        stages.append(make_stage(cfg, acc))
    return stages[0], stages[1]


def run(
    config: str,
    steps: int,
    overrides: list[str],
    control: bool = False,
    reference: list[str] | None = None,
    grad_noise: float = 0.0,
    precision: str | None = None,
) -> dict:
    """Both stages of `config` in lockstep over `steps` batches of its loader: the summary and every step."""
    first, compiled = paired_stages(config, overrides, control, reference, precision)
    cfg, acc = compiled.cfg, compiled.acc
    if grad_noise:
        add_gradient_noise(compiled, grad_noise, cfg.seed)
    rows = lockstep(first, compiled, drawn_batches(cfg, acc.device, steps), cfg.seed)
    return {
        "config_file": config,
        "control": control,
        "reference": list(reference) if reference else "eager",  # what the first stage was built from
        "grad_noise": grad_noise,
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
    pairing = p.add_mutually_exclusive_group()
    pairing.add_argument("--control", action="store_true", help="eager against eager: the device's own gap floor")
    pairing.add_argument("--reference", nargs="+", metavar="KEY=VALUE", help="against the compiled config with these")
    p.add_argument("overrides", nargs="*", help="key=value overrides for both stages (compile is set per stage)")
    p.add_argument("--grad-noise", type=float, default=0.0, help="noise on the second stage's gradients, x their RMS")
    p.add_argument("--precision", choices=["no", "bf16"], help="autocast (default: the config's; CPU: fp32)")
    args = p.parse_args(argv)
    result = run(args.config, args.steps, args.overrides, args.control, args.reference, args.grad_noise, args.precision)
    for key, value in result["max_gap"].items():
        print(f"{key:>24}: gap median {result['median_gap'][key]:.2e}, max {value:.2e}", file=sys.stderr)
    for name, value in result["min_update_cosine"].items():
        print(f"{name:>24}: smallest update cosine {value:.6f}", file=sys.stderr)
    for name, value in result["lowest_layers"].items():
        print(f"{name:>40}: median update cosine {value:.6f}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
