"""Typed training configuration, read from `train/configs/<name>.yaml` (which may `extends:` another) with the
project's one strict loader (psp_hub.common.config): unknown keys and wrongly typed values are errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from psp_hub.common.config import ConfigError, apply_overrides, build_config, load_yaml
from psp_hub.data import DataConfig
from psp_hub.models.config import PSPGANConfig

from .diffaugment import parse_policy


@dataclass
class LossWeights:
    """Weights of eq. (5)-(9). The paper gives none; these are GFPGAN's published ones (train_gfpgan_v1.yml)."""

    l1: float = 0.1  # GFPGAN pixel_opt
    perceptual: float = 1.0  # GFPGAN perceptual_weight
    perceptual_network: Literal["vgg16", "vgg19"] = "vgg16"  # the paper says VGG-19; VGG-16 is what we have offline
    perceptual_weights_path: str | None = None  # VGG-19 needs a user-provided torchvision state dict
    identity: float = 10.0  # GFPGAN identity_weight
    identity_criterion: Literal["l1", "l2", "cosine"] = "l1"  # eq. 6 is L1 (GFPGAN); cosine gives a ~10x larger signal
    unet: float = 1.0  # GFPGAN pyramid_loss_weight (U-Net reconstruction)
    unet_until: float = 0.0625  # fraction of the run after which it is dropped (GFPGAN: 50k of 800k)
    gan: float = 0.1  # GFPGAN gan_opt loss_weight
    component_gan: float = 1.0  # GFPGAN gan_component_opt loss_weight
    component_style: float = 200.0  # GFPGAN comp_style_weight (gram loss on component D features)
    r1_gamma: float = 10.0  # GFPGAN r1_reg_weight
    r1_every: int = 16  # lazy R1 (GFPGAN net_d_reg_every)
    # DiffAugment policy (Zhao et al. 2020; training/diffaugment.py) on reals and fakes before the global
    # discriminator (the prior's D, PSP-GAN's global D), e.g. "color,translation,cutout"; "" = off
    diffaug: str = ""
    # steps over which the generator's adversarial terms (gan, component_gan, component_style) ramp linearly from 0
    # to their weights, while the discriminators train at full rate from the start: a fine-tune's fresh
    # discriminators otherwise push a trained generator around before they know real from fake (round 3 at 256 px:
    # perceptual and identity losses fell for ~500 steps, then rose as the component terms grew)
    adversarial_warmup: int = 0
    # the step from which the eye/mouth terms (component_gan, component_style) count and their discriminators train,
    # ramping in over adversarial_warmup steps from there (the global GAN keeps its ramp from step 0): from step 0
    # they made speckle at 256 px (docs/release-model.md, round 5), so a fallback brings them back after the warm-up
    component_from: int = 0
    # -log(weight on a sample's own references) for samples given a distractor (training/distractors.py): the reason
    # for a model with `model.reference_selection` to prefer the right person's photo; needs distractor_references
    reference_selection: float = 0.0


@dataclass
class OptimConfig:
    """Adam as in the paper: lr 2e-3 halved at 700k and 750k of 800k iterations (scaled to max_steps)."""

    lr: float = 2e-3
    d_lr: float = 2e-3
    betas: tuple[float, float] = (0.0, 0.99)
    decay_at: tuple[float, ...] = (0.875, 0.9375)
    decay_factor: float = 0.5
    ema_decay: float = 0.999
    grad_clip: float | None = None
    # torch's fused Adam: one kernel per parameter group instead of a few per tensor (fewer launches per step)
    fused: bool = False
    # samples per step that lr, d_lr and ema_decay were tuned at; another batch rescales them (training/scaling.py).
    # 0 = use them as given
    reference_batch: int = 0
    # lr multipliers for named generator submodules, e.g. {ref_unet: 0.1}: a module trained before (the reference
    # encoder of a grown model) moves slower than the rest instead of staying frozen (frozen_modules)
    module_lr: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """One training run: stage 'prior' (unconditional StyleGAN2) or 'pspgan' (the restoration model)."""

    stage: Literal["prior", "pspgan"] = "pspgan"
    output_dir: str = "runs/psp-gan-128"
    seed: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 10000
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    freeze_prior_steps: int = 0  # keep the StyleGAN2 prior frozen for a warm-up
    # stage 'pspgan': generator submodules kept frozen for the whole run, by name (e.g. ref_unet: a grown model keeps
    # the reference encoder it was trained with, so its features keep telling people apart)
    frozen_modules: tuple[str, ...] = ()
    # torch.compile the generator, the perceptual VGG, the identity net and the discriminators (fewer, fused
    # kernels: a 512 px step dispatches ~14k ops eagerly). Lazy R1 stays eager: it needs double backward, which
    # compile lacks. Costs a few minutes of compiling at the start of each run.
    compile: bool = False
    # torch.compile backend: "inductor" (fused kernels: the speed), or "aot_eager" (dynamo and AOT autograd without
    # code generation: the same graphs in seconds, for tests on a busy CPU)
    compile_backend: str = "inductor"
    # torch.compile mode (inductor): "reduce-overhead" adds CUDA graph trees over the compiled graphs, so a host-bound
    # step stops paying a launch per kernel. With each network compiled alone it bought little (H200: psp-256 177 ->
    # 195 samples/s steady on real data, prior-256 699 -> 716) for a start ~87 s longer (compile from the cache file
    # 100 s instead of 35, graph recording 23 s). With `compile_losses` (a few large compiled calls a step) it doubles
    # the PSP-GAN step (H200, synthetic batches: psp-256 169.4 -> 345.0 samples/s, GPU busy 39 -> 92 %; psp-128
    # 683.7; eager on real data 149.3), so train/device/psp256_round.sh turns it on. On real faces, once the warm-up
    # is past the R1 step's recordings: psp-256 358.2, psp-128 667.7 samples/s, and with `compile_r1` prior-256
    # 1,056.0, prior-128 2,200.8 images/s (docs/speed.md, "Where it stands"). CPU runs ignore the CUDA graphs.
    # "max-autotune-no-cudagraphs" searches kernel configs (longer compiles).
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    # with compile: the generator's forward and all its loss terms as one compiled function, and the discriminators'
    # logistic terms as another (R1 stays eager), instead of each network compiled alone with the loss code between
    # them (DiffAugment, crops, distances, grams, the identity warp) run eagerly. The compiled psp-256 step is
    # host-bound on the H200 (GPU busy 34-50 %); there this gave 144.9 -> 169.4 samples/s (synthetic batches, one
    # machine; compiled calls 41 -> 4 a step, eager operators 1,667 -> 474), the priors 1.02x (docs/speed.md).
    # DiffAugment then draws inside the graphs (other draws than eager's, the same distributions). Opt-in like
    # `compile` (train/device/psp256_round.sh turns both on): its cold compile is two long graphs (~6 minutes on
    # the H200's host for psp-256's generator terms).
    compile_losses: bool = False
    # with compile: the lazy R1 step's penalty as one compiled function (the discriminator's input gradient taken by
    # torch.func.grad inside it, so AOTAutograd derives the second backward) instead of eager code around the eager
    # discriminator. H200, synthetic batches, batch 128, with compile_losses: prior-256 992.0 against 871.4 images/s
    # (R1 step 354.5 against 658.4 ms, one call), prior-128 2,086.3 against 1,829.1 (R1 step 120.9 against 265.1 ms,
    # two sessions); its graph adds ~2 minutes to a cold compile (forward 62-84 s, backward 60-78 s). Opt-in like
    # `compile_losses`; not yet timed for PSP-GAN.
    compile_r1: bool = False
    # NHWC activations and weights in the generator, discriminators and loss networks: cuDNN's native bf16 conv
    # layout, without the NCHW<->NHWC conversion kernels a step otherwise runs around every convolution
    channels_last: bool = False
    # keep the frozen loss networks (VGG, identity) in bf16 under bf16 mixed precision, so autocast does not
    # re-cast their fp32 weights on every call (copy kernels on each step)
    loss_nets_bf16: bool = False
    prior_path: str | None = None  # stage 'pspgan': the pretrained StyleGAN2 (ours from stage 'prior', or public)
    # stage 'pspgan': fine-tune a trained PSP-GAN instead (Hub repo id or folder; its config must equal `model`);
    # the generator starts from its weights, the discriminators and optimizers start fresh.
    # stage 'prior': start from a prior export or a PSP-GAN's decoder, every tensor whose name and shape match
    # (e.g. a 256 px prior from the 128 px one: training/warm_start.py); the rest starts fresh, and the log says which
    init_from: str | None = None
    # continue a run on another machine (training/handover.py): the hand-over folder an earlier run's export wrote
    # (handover_dir) holds its discriminators and step; they load, the step counter starts at that step so every
    # step-driven schedule (warm-ups, unet_until, lr decay, R1 cadence, distractor draws, data phase and position)
    # goes on where it was. The generator comes from init_from (that run's EMA export), the EMA restarts from it,
    # and the optimizers' moments restart. Under --resume a checkpoint in output_dir wins (it is this continuation
    # carried further on this machine) when it is at or past the hand-over's step.
    continue_from: str | None = None
    # where an export also writes the hand-over (fp16 discriminators + handover.json) for continue_from
    handover_dir: str | None = None
    style_mixing_prob: float = 0.9  # stage 'prior'
    # stage 'pspgan': probability that a sample with >= 2 valid references gets one replaced by another person's from
    # the batch (training/distractors.py), for the reference selection loss (losses.reference_selection)
    distractor_references: float = 0.0
    d_narrow: float = 1.0  # width of the global StyleGAN2 discriminator (1.0 = StyleGAN2's channels)
    component_d_channels: int = 64  # first-layer width of the eye/mouth discriminators (GFPGAN: 64)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 25
    images_every: int = 500
    validate_every: int = 1000
    val_samples: int = 64
    # profile this many steps under torch.profiler once the run has 20 steps behind it (training/step_profile.py):
    # GPU-busy share and time by kernel kind in output_dir/profile.json, from the real loader and compiled graphs
    profile_steps: int = 0
    tracker: Literal["tensorboard", "none"] = "tensorboard"
    export_dir: str | None = None  # Hub-layout folder for the EMA weights at the end
    # the export's storage dtype: float16 halves it (a 256 px PSP-GAN: 54 -> 27 MB), so the export and its hand-over
    # (19 MB) come back from a device call, and go to the next, inside one call's 64 MiB; weights load as float32
    export_dtype: Literal["float32", "float16"] = "float32"
    hub_repo_id: str | None = None  # pushed there (push_to_hub) when --push-to-hub is given
    model: PSPGANConfig = field(default_factory=PSPGANConfig)
    data: DataConfig = field(default_factory=DataConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build strictly (nested model, data, losses and optim included), then check what spans sections."""
        cfg = build_config(cls, values)
        if cfg.data.out_size != cfg.model.out_size:
            raise ConfigError(f"data.out_size ({cfg.data.out_size}) must equal model.out_size ({cfg.model.out_size})")
        if cfg.data.max_references > cfg.model.max_references:
            raise ConfigError("data.max_references exceeds model.max_references")
        try:
            parse_policy(cfg.losses.diffaug)  # an unknown name fails here, not at the first step
        except ValueError as err:
            raise ConfigError(f"losses.diffaug: {err}") from None
        _check_reference_selection(cfg)
        _check_continuation(cfg)
        for key in ("compile_losses", "compile_r1"):
            if getattr(cfg, key) and not cfg.compile:
                raise ConfigError(f"{key} needs compile: true")
        if cfg.init_from and cfg.prior_path:
            raise ConfigError(
                "give init_from (a whole PSP-GAN, or a prior for stage 'prior') or prior_path (its "
                "StyleGAN2 prior), not both"
            )
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """Read a YAML file (following `extends:`); `overrides` are `a.b=value` strings (value parsed as YAML)."""
        return cls.from_dict(apply_overrides(load_yaml(path), overrides))

    @property
    def compile_options(self) -> dict[str, str]:
        """The torch.compile keyword arguments every compiled module of the run gets: the backend, and the mode
        unless it is the default."""
        mode = {} if self.compile_mode == "default" else {"mode": self.compile_mode}
        return {"backend": self.compile_backend, **mode}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_reference_selection(cfg: TrainConfig) -> None:
    """The selection loss needs a model with selection and batches with distractors; a probability is in [0, 1]."""
    if not 0.0 <= cfg.distractor_references <= 1.0:
        raise ConfigError(f"distractor_references must be a probability in [0, 1], got {cfg.distractor_references}")
    if cfg.losses.reference_selection < 0:
        raise ConfigError(f"losses.reference_selection must be >= 0, got {cfg.losses.reference_selection}")
    if cfg.losses.reference_selection > 0 and not cfg.model.reference_selection:
        raise ConfigError("losses.reference_selection needs model.reference_selection: true")
    if cfg.losses.reference_selection > 0 and cfg.distractor_references <= 0:
        raise ConfigError("losses.reference_selection needs distractor_references > 0 (it trains on distractors)")


def _check_continuation(cfg: TrainConfig) -> None:
    """A continued run needs the generator its hand-over was written with; component_from is a step of the run."""
    if cfg.continue_from and not cfg.init_from:
        raise ConfigError("continue_from needs init_from: the EMA export written together with that hand-over")
    if cfg.losses.component_from < 0:
        raise ConfigError(f"losses.component_from must be >= 0, got {cfg.losses.component_from}")
    if cfg.losses.component_from > 0 and cfg.losses.component_gan <= 0 and cfg.losses.component_style <= 0:
        raise ConfigError("losses.component_from needs losses.component_gan or losses.component_style > 0")
    if cfg.continue_from:  # a hand-over that cannot continue this run fails here, in one line, not at a step
        from .handover import check_handover

        check_handover(cfg)
