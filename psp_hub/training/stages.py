"""The two training stages: the StyleGAN2 prior (stage 1) and PSP-GAN itself (stage 2).

Each stage builds its networks and optimizers, runs one optimisation step on a batch, and exports its
EMA weights; the loop in `trainer.py` does everything else (data, checkpoints, logging, time budget).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from psp_hub.data.mixing import native_levels
from psp_hub.discriminators import StyleGAN2Discriminator
from psp_hub.losses.gan import d_logistic_loss, g_nonsaturating_loss, r1_penalty_of
from psp_hub.models import PSPGAN, StyleGAN2Generator
from psp_hub.models.prior_loading import PRIOR_CONFIG_FILE, PRIOR_CONFIG_KEYS
from psp_hub.models.stylegan2 import draw_mixing_index

from .batches import to_channels_last
from .compilation import compile_in_place, compiled_view, run_eager
from .config import OptimConfig, TrainConfig
from .diffaugment import DiffAugment
from .distractors import add_distractors, step_generator
from .handover import adversarial_origin, discriminator_names, load_discriminators, read_handover
from .objectives import Discriminators, DiscView, PSPGANObjective
from .param_groups import equalized_lr_groups, named_submodule
from .scaling import scaled_for_batch
from .schedule import ema_weights, make_ema, step_decay_scheduler
from .warm_start import PRIOR_FILE, init_pspgan, load_matching, prior_state_dict

__all__ = ["PRIOR_FILE", "PSPGANStage", "PriorStage", "Stage", "make_stage"]


def _adam(params, lr, betas, fused=False):
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, betas=tuple(betas), fused=fused or None)


def _generator_adam(generator, optim: OptimConfig):
    """Adam over the trainable generator parameters, StyleGAN2 weights at their equalized-lr rates."""
    groups = equalized_lr_groups(generator, optim.lr, optim.module_lr)
    return torch.optim.Adam(groups, betas=tuple(optim.betas), fused=optim.fused or None)


def freeze_modules(model: torch.nn.Module, names) -> None:
    """Turn off gradients of the named submodules (before the optimizers are built, so they never list them)."""
    for name in names:
        named_submodule(model, name, "frozen_modules").requires_grad_(False)


class Stage:
    """Common wiring: optimizers with the step-decay schedule, EMA of the generator, accelerate.prepare.

    With `continue_from` (training/handover.py) the discriminators load from the hand-over and the lr schedules
    start at its step; the optimizers' moments start fresh, and the EMA starts from the loaded generator.
    """

    generator: torch.nn.Module
    ema = None

    def __init__(self, cfg: TrainConfig, accelerator):
        self.cfg, self.acc = cfg, accelerator
        self.optim = scaled_for_batch(cfg.optim, cfg.batch_size * cfg.grad_accum * accelerator.num_processes)
        self.handover = read_handover(cfg.continue_from) if cfg.continue_from else None
        self.start_step = self.handover.step if self.handover else 0

    def _finish_build(self, generator, discriminators: list[torch.nn.Module]):
        cfg, optim = self.cfg, self.optim
        if self.handover is not None and self.handover.has_discriminators:
            named = dict(zip(discriminator_names(cfg.stage), discriminators, strict=True))
            load_discriminators(cfg.continue_from, named)
        if cfg.channels_last:
            for module in (generator, *discriminators):
                to_channels_last(module)
        opt_g = _generator_adam(generator, optim)
        opt_d = _adam([p for d in discriminators for p in d.parameters()], optim.d_lr, optim.betas, optim.fused)
        sched_g = step_decay_scheduler(opt_g, cfg.max_steps, optim.decay_at, optim.decay_factor, self.start_step)
        sched_d = step_decay_scheduler(opt_d, cfg.max_steps, optim.decay_at, optim.decay_factor, self.start_step)
        prepared = self.acc.prepare(generator, *discriminators, opt_g, opt_d, sched_g, sched_d)
        n = len(discriminators)
        self.generator, self.discriminators = prepared[0], list(prepared[1 : 1 + n])
        self.opt_g, self.opt_d, self.sched_g, self.sched_d = prepared[1 + n :]
        # after prepare: with several processes DDP has broadcast rank 0's weights, so every EMA starts equal
        self.ema = make_ema(self.raw_generator, optim.ema_decay)
        self.ema.to(self.acc.device)
        if cfg.compile:
            compile_in_place(self.raw_generator, **cfg.compile_options)

    def _compile_terms(self) -> None:
        """`_generator_terms` / `_discriminator_terms`: the eager methods, or with `compile_losses` one compiled
        function each (the networks' compiled calls traced into them); `_r1`: eager R1, or with `compile_r1` the
        traced form compiled."""
        self._generator_terms, self._discriminator_terms = self._generator_terms_eager, self._discriminator_terms_eager
        if self.cfg.compile_losses:
            self._generator_terms = compiled_view(self._generator_terms_eager, **self.cfg.compile_options)
            self._discriminator_terms = compiled_view(self._discriminator_terms_eager, **self.cfg.compile_options)
        self._r1 = self._r1_terms
        if self.cfg.compile_r1:
            self._r1 = compiled_view(functools.partial(self._r1_terms, traced=True), **self.cfg.compile_options)

    def _begin_step(self) -> None:
        """Under CUDA graphs (compile_mode reduce-overhead) a new training step begins: the graphs may now reuse the
        memory of the previous step's outputs, which the trainer reads before the next step (logs, images)."""
        if self.cfg.compile and self.cfg.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()

    @property
    def raw_generator(self):
        return self.acc.unwrap_model(self.generator)

    def discriminator_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each discriminator's weights by its hand-over name (training/handover.py)."""
        names = discriminator_names(self.cfg.stage)
        return {n: self.acc.unwrap_model(d).state_dict() for n, d in zip(names, self.discriminators, strict=True)}

    def _set_requires_grad(self, modules, flag: bool):
        for m in modules:
            for p in self.acc.unwrap_model(m).parameters():
                p.requires_grad_(flag)

    def _optimizer_step(self, loss, optimizer, scheduler, params):
        self.acc.backward(loss)
        if self.cfg.optim.grad_clip and self.acc.sync_gradients:
            self.acc.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        optimizer.step()
        if self.acc.sync_gradients:  # one schedule step per optimizer step, whatever the process count
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def ema_step(self):
        if self.acc.sync_gradients:
            self.ema.step(self.raw_generator.parameters())

    def r1_due(self, step: int) -> bool:
        """Whether `step` is a lazy-R1 step (every r1_every-th, from step 0)."""
        return step % self.cfg.losses.r1_every == 0


class PriorStage(Stage):
    """Stage 1: an unconditional StyleGAN2 (the class PSP-GAN uses) with logistic loss, lazy R1 and EMA; D sees reals
    and fakes through DiffAugment when `losses.diffaug` names a policy (R1 is then taken through it, as in the paper).
    """

    def build(self):
        m = self.cfg.model
        generator = StyleGAN2Generator(
            m.out_size, m.style_dim, m.n_mlp, m.channel_multiplier, m.narrow, m.max_channels, m.sft_half
        )
        if self.cfg.init_from:
            report = load_matching(generator, prior_state_dict(self.cfg.init_from), self.cfg.init_from)
            self.acc.print(report.summary())
        disc = StyleGAN2Discriminator(m.out_size, channel_multiplier=m.channel_multiplier, narrow=self.cfg.d_narrow)
        self._finish_build(generator, [disc])
        self.disc = self.discriminators[0]
        # the compiled view serves the logistic terms; R1's double backward keeps the eager module
        self.disc_fast = compiled_view(self.disc, **self.cfg.compile_options) if self.cfg.compile else self.disc
        self.augment = DiffAugment(self.cfg.losses.diffaug)
        self._compile_terms()

    def _generator_terms_eager(self, z: list[torch.Tensor], mixing_index: torch.Tensor):
        """Fakes from two codes crossed over at `mixing_index`, and the generator's logistic loss on them."""
        fake = self.generator(z, mixing_index=mixing_index)
        return fake, g_nonsaturating_loss(self.disc_fast(self.augment(fake)))

    def _discriminator_terms_eager(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's logistic loss on reals and (detached) fakes (R1 apart)."""
        return d_logistic_loss(self.disc_fast(self.augment(real)), self.disc_fast(self.augment(fake)))

    def _r1_terms(self, real: torch.Tensor, traced: bool = False) -> torch.Tensor:
        """R1 at the reals through DiffAugment, on the eager discriminator (traced: the form `compile_r1` compiles)."""
        return r1_penalty_of(lambda images: self.disc(self.augment(images)), real, traced)

    def step(self, batch, step: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.acc
        self._begin_step()
        real = batch["target"]
        b = real.shape[0]
        g = self.raw_generator
        # two codes and the crossover as a tensor every step: one generator graph when compiled (k = num_latent: no
        # mixing); the draws are those of before whenever a step mixes
        z = [torch.randn(b, g.style_dim, device=real.device) for _ in range(2)]
        k = torch.full((), draw_mixing_index(g.num_latent, cfg.style_mixing_prob), device=real.device)
        logs = {}
        self._set_requires_grad([self.disc], False)
        with acc.autocast():
            fake, g_loss = self._generator_terms(z, k)
        self._optimizer_step(g_loss, self.opt_g, self.sched_g, self.generator.parameters())
        logs["g_gan"] = g_loss.detach()
        self._set_requires_grad([self.disc], True)
        with acc.autocast():
            d_loss = self._discriminator_terms(real, fake.detach())
            if self.r1_due(step):
                r1 = self._r1(real)
                d_loss = d_loss + cfg.losses.r1_gamma / 2 * r1 * cfg.losses.r1_every
                logs["r1"] = r1.detach()
        self._optimizer_step(d_loss, self.opt_d, self.sched_d, self.disc.parameters())
        logs["d_loss"] = d_loss.detach()
        self.ema_step()
        return logs

    @torch.no_grad()
    def sample_images(self, batch):
        g = self.raw_generator
        z = torch.randn(min(8, batch["target"].shape[0]), g.style_dim, device=self.acc.device, generator=None)
        with run_eager():
            samples = g(z, randomize_noise=False)
        return {"samples": samples, "real": batch["target"][:8]}

    def export(self, folder: str | Path, **_) -> Path:
        """EMA generator weights as safetensors plus the generator's settings."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with ema_weights(self.ema, self.raw_generator) as g:
            state = {k: v.detach().float().cpu().contiguous() for k, v in g.state_dict().items()}
        save_file(state, str(folder / PRIOR_FILE))
        m = self.cfg.model
        (folder / PRIOR_CONFIG_FILE).write_text(json.dumps({k: getattr(m, k) for k in PRIOR_CONFIG_KEYS}, indent=2))
        return folder / PRIOR_FILE


class PSPGANStage(Stage):
    """Stage 2: PSP-GAN with the whole objective, initialised from the pretrained prior."""

    def build(self):
        cfg = self.cfg
        model = PSPGAN(cfg.model)
        if cfg.init_from:
            self.acc.print(init_pspgan(model, cfg.init_from).summary())
        elif cfg.prior_path:
            path = Path(cfg.prior_path)
            model.load_prior(path / PRIOR_FILE if path.is_dir() else path)
        freeze_modules(model, cfg.frozen_modules)
        discs = Discriminators(cfg.model.out_size, narrow=cfg.d_narrow, component_channels=cfg.component_d_channels)
        levels = native_levels(cfg.data.out_size, cfg.data.sharp_threshold)
        self.objective = PSPGANObjective(
            cfg.losses, cfg.model.out_size, levels=levels, adversarial_from=adversarial_origin(self.handover)
        ).to(self.acc.device)
        self._prepare_loss_nets()
        self._finish_build(model, [discs.global_d, *discs.components.values()])
        global_d, components = self.discriminators[0], dict(zip(discs.components.keys(), self.discriminators[1:]))
        if cfg.compile:
            # compiled wrappers share the prepared modules' parameters; lazy R1 (double backward, which
            # torch.compile does not support) keeps calling the eager global discriminator.
            options = cfg.compile_options
            self.discs = DiscView(
                compiled_view(global_d, **options),
                {n: compiled_view(d, **options) for n, d in components.items()},
                r1_global_d=global_d,
            )
        else:
            self.discs = DiscView(global_d, components)
        self._prior_frozen = None
        self._compile_terms()

    def _prepare_loss_nets(self):
        """Layout, precision and compilation of the frozen loss networks (VGG; the identity net, whose warp runs
        eagerly unless `compile_losses` traces it into the generator's graph)."""
        nets = [
            net
            for net in (
                self.objective.perceptual and self.objective.perceptual.vgg,
                self.objective.identity and self.objective.identity.encoder.net,
            )
            if net is not None
        ]
        bf16 = self.cfg.loss_nets_bf16 and self.acc.mixed_precision == "bf16"
        for net in nets:
            if self.cfg.channels_last:
                to_channels_last(net)
            if bf16:  # autocast would otherwise cast the fp32 weights to bf16 again on every call
                net.to(torch.bfloat16)
            if self.cfg.compile:
                compile_in_place(net, **self.cfg.compile_options)

    def _freeze_prior(self, frozen: bool):
        if frozen == self._prior_frozen:
            return
        for name, p in self.raw_generator.generator.named_parameters():
            if not name.startswith("style_mlp."):
                p.requires_grad_(not frozen)
        self._prior_frozen = frozen

    def step(self, batch, step: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.acc
        self._begin_step()
        self._freeze_prior(step < cfg.freeze_prior_steps)
        self._set_requires_grad(self.discriminators, False)
        # the RGB heads run only while their loss does: DDP (find_unused_parameters) would otherwise see them in the
        # forward outputs and wait forever for their gradients ("Expected to have finished reduction ...")
        use_unet = self.objective.unet_active(step, cfg.max_steps)
        # compiled, they run to the end with their term times 0 after unet_until: the generator's graph then never
        # changes (it recompiled there, forward and backward: minutes on the device, mid-chunk)
        run_unet = use_unet or (cfg.compile and self.objective.w.unet > 0)
        components = self.objective.components_active(step)  # before component_from their Ds neither run nor learn
        if cfg.distractor_references > 0:  # another person's reference in some slots: what selection learns from
            batch = add_distractors(
                batch, cfg.distractor_references, step_generator(cfg.seed, step, batch["lq"].device)
            )
        with acc.autocast():
            out, g_terms = self._generator_terms(batch, run_unet, components)
            g_losses = self.objective.ramped(g_terms, step)
            if run_unet and not use_unet:
                g_losses["unet"] = g_losses["unet"] * 0.0
            g_total = sum(g_losses.values())
        self._optimizer_step(g_total, self.opt_g, self.sched_g, self.generator.parameters())
        self._set_requires_grad(self.discriminators, True)
        with acc.autocast():
            d_losses = self._discriminator_terms(out.image.detach(), batch, components)
            if self.r1_due(step):
                d_losses |= self._r1(batch)
            d_total = sum(d_losses.values())
        self._optimizer_step(
            d_total, self.opt_d, self.sched_d, [p for d in self.discriminators for p in d.parameters()]
        )
        self.ema_step()
        logs = {k: v.detach() for k, v in {**g_losses, **d_losses}.items()}
        logs["g_total"] = g_total.detach()
        return logs

    def _generator_terms_eager(self, batch, run_unet: bool, components: bool):
        """The generator's output on a batch and its weighted loss terms (before the adversarial ramps)."""
        out = self.generator(batch["lq"], batch["refs"], batch["ref_mask"], return_unet_images=run_unet)
        return out, self.objective.generator_losses(out, batch, self.discs, run_unet, components)

    def _discriminator_terms_eager(self, fake, batch, components: bool):
        """The discriminators' logistic terms on a batch and the generator's detached output (R1 apart)."""
        return self.objective.discriminator_losses(fake, batch, self.discs, with_r1=False, components=components)

    def _r1_terms(self, batch, traced: bool = False) -> dict[str, torch.Tensor]:
        return self.objective.r1_terms(batch, self.discs, traced)

    @torch.no_grad()
    def sample_images(self, batch):
        g = self.raw_generator
        was = g.training
        g.eval()
        n = min(4, batch["lq"].shape[0])
        with run_eager():
            out = g(batch["lq"][:n], batch["refs"][:n], batch["ref_mask"][:n]).image
        g.train(was)
        refs = batch["refs"][:n] * batch["ref_mask"][:n, :, None, None, None]
        return {"lq": batch["lq"][:n], "refs": refs, "output": out, "target": batch["target"][:n]}

    def export(
        self, folder: str | Path, push_to_hub: bool = False, summary: str = "", metrics_markdown: str = ""
    ) -> Path:
        """EMA weights through save_pretrained (Hub layout, rendered card); push_to_hub when asked."""
        with ema_weights(self.ema, self.raw_generator) as g:
            export = PSPGAN(g.config)
            export.load_state_dict({k: v.detach().float().cpu() for k, v in g.state_dict().items()})
        export.to(getattr(torch, self.cfg.export_dtype))
        card = {
            "trained": True,
            "training_summary": summary,
            "metrics_markdown": metrics_markdown,
            "repo_id": self.cfg.hub_repo_id or f"psp-gan/{Path(folder).name}",
        }
        readme = Path(folder) / "README.md"
        readme.unlink(missing_ok=True)  # save_pretrained keeps an existing card: re-render it
        export.save_pretrained(folder, model_card_kwargs=card)
        if push_to_hub:
            if not self.cfg.hub_repo_id:
                raise ValueError("push_to_hub needs hub_repo_id in the config")
            export.push_to_hub(self.cfg.hub_repo_id, model_card_kwargs=card)
        return Path(folder)


def make_stage(cfg: TrainConfig, accelerator) -> Stage:
    stage = {"prior": PriorStage, "pspgan": PSPGANStage}[cfg.stage](cfg, accelerator)
    stage.build()
    return stage
