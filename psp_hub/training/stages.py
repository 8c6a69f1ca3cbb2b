"""The two training stages: the StyleGAN2 prior (stage 1) and PSP-GAN itself (stage 2).

Each stage builds its networks and optimizers, runs one optimisation step on a batch, and exports its
EMA weights; the loop in `trainer.py` does everything else (data, checkpoints, logging, time budget).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file

from psp_hub.discriminators import StyleGAN2Discriminator
from psp_hub.losses.gan import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from psp_hub.models import PSPGAN, PSPGANConfig, StyleGAN2Generator

from .compilation import compile_in_place, compiled_view
from .config import TrainConfig
from .objectives import Discriminators, PSPGANObjective
from .param_groups import equalized_lr_groups
from .schedule import make_ema, step_decay_scheduler

PRIOR_FILE = "prior_ema.safetensors"


def _adam(params, lr, betas, fused=False):
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, betas=tuple(betas), fused=fused or None)


def _generator_adam(generator, lr, betas, fused=False):
    """Adam over the trainable generator parameters, StyleGAN2 weights at their equalized-lr rates."""
    return torch.optim.Adam(equalized_lr_groups(generator, lr), betas=tuple(betas), fused=fused or None)


class Stage:
    """Common wiring: optimizers with the step-decay schedule, EMA of the generator, accelerate.prepare."""

    generator: torch.nn.Module
    ema = None

    def __init__(self, cfg: TrainConfig, accelerator):
        self.cfg, self.acc = cfg, accelerator

    def _finish_build(self, generator, discriminators: list[torch.nn.Module]):
        cfg = self.cfg
        opt_g = _generator_adam(generator, cfg.optim.lr, cfg.optim.betas, cfg.optim.fused)
        opt_d = _adam([p for d in discriminators for p in d.parameters()], cfg.optim.d_lr, cfg.optim.betas, cfg.optim.fused)
        sched_g = step_decay_scheduler(opt_g, cfg.max_steps, cfg.optim.decay_at, cfg.optim.decay_factor)
        sched_d = step_decay_scheduler(opt_d, cfg.max_steps, cfg.optim.decay_at, cfg.optim.decay_factor)
        prepared = self.acc.prepare(generator, *discriminators, opt_g, opt_d, sched_g, sched_d)
        n = len(discriminators)
        self.generator, self.discriminators = prepared[0], list(prepared[1:1 + n])
        self.opt_g, self.opt_d, self.sched_g, self.sched_d = prepared[1 + n:]
        # after prepare: with several processes DDP has broadcast rank 0's weights, so every EMA starts equal
        self.ema = make_ema(self.raw_generator, cfg.optim.ema_decay)
        self.ema.to(self.acc.device)
        if cfg.compile:
            compile_in_place(self.raw_generator)

    @property
    def raw_generator(self):
        return self.acc.unwrap_model(self.generator)

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


class PriorStage(Stage):
    """Stage 1: an unconditional StyleGAN2 (the class PSP-GAN uses) with logistic loss, lazy R1 and EMA."""

    def build(self):
        m = self.cfg.model
        generator = StyleGAN2Generator(m.out_size, m.style_dim, m.n_mlp, m.channel_multiplier, m.narrow, m.max_channels, m.sft_half)
        disc = StyleGAN2Discriminator(m.out_size, channel_multiplier=m.channel_multiplier, narrow=self.cfg.d_narrow)
        self._finish_build(generator, [disc])
        self.disc = self.discriminators[0]

    def step(self, batch, step: int) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        real = batch["target"]
        b = real.shape[0]
        g = self.raw_generator
        z = [torch.randn(b, g.style_dim, device=real.device)]
        if random.random() < cfg.style_mixing_prob:
            z.append(torch.randn(b, g.style_dim, device=real.device))
        logs = {}
        self._set_requires_grad([self.disc], False)
        with acc.autocast():
            fake = self.generator(z)
            g_loss = g_nonsaturating_loss(self.disc(fake))
        self._optimizer_step(g_loss, self.opt_g, self.sched_g, self.generator.parameters())
        logs["g_gan"] = g_loss.detach()
        self._set_requires_grad([self.disc], True)
        with acc.autocast():
            d_loss = d_logistic_loss(self.disc(real), self.disc(fake.detach()))
            if step % cfg.losses.r1_every == 0:
                real_r1 = real.detach().requires_grad_(True)
                r1 = r1_penalty(self.disc(real_r1), real_r1)
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
        return {"samples": g(z, randomize_noise=False), "real": batch["target"][:8]}

    def export(self, folder: str | Path, **_) -> Path:
        """EMA generator weights as safetensors plus the generator's settings."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        g = self.raw_generator
        params = list(g.parameters())
        self.ema.store(params)
        self.ema.copy_to(params)
        state = {k: v.detach().float().cpu().contiguous() for k, v in g.state_dict().items()}
        self.ema.restore(params)
        save_file(state, str(folder / PRIOR_FILE))
        m = self.cfg.model
        (folder / "prior_config.json").write_text(json.dumps(
            {k: getattr(m, k) for k in ("out_size", "style_dim", "n_mlp", "channel_multiplier", "narrow", "max_channels")}, indent=2))
        return folder / PRIOR_FILE


def _pretrained_generator(source: str, expected: PSPGANConfig) -> PSPGAN:
    """A trained PSP-GAN (Hub id or folder) to fine-tune; its architecture must be the run's."""
    model = PSPGAN.from_pretrained(source)
    have, want = model.config.to_dict(), expected.to_dict()
    differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if differ:
        raise ValueError(f"init_from {source}: its config differs from the run's model config in "
                         + ", ".join(f"{k} ({have.get(k)!r} vs {want.get(k)!r})" for k in differ))
    return model


class PSPGANStage(Stage):
    """Stage 2: PSP-GAN with the whole objective, initialised from the pretrained prior."""

    def build(self):
        cfg = self.cfg
        model = PSPGAN(cfg.model)
        if cfg.init_from:
            model.load_state_dict(_pretrained_generator(cfg.init_from, cfg.model).state_dict())
        elif cfg.prior_path:
            path = Path(cfg.prior_path)
            model.load_prior(path / PRIOR_FILE if path.is_dir() else path)
        discs = Discriminators(cfg.model.out_size, narrow=cfg.d_narrow, component_channels=cfg.component_d_channels)
        self.objective = PSPGANObjective(cfg.losses, cfg.model.out_size).to(self.acc.device)
        if cfg.compile:  # the frozen loss networks: VGG, and the identity net (its warp stays eager)
            if self.objective.perceptual is not None:
                compile_in_place(self.objective.perceptual.vgg)
            if self.objective.identity is not None:
                compile_in_place(self.objective.identity.encoder.net)
        self._finish_build(model, [discs.global_d, *discs.components.values()])
        global_d, components = self.discriminators[0], dict(zip(discs.components.keys(), self.discriminators[1:]))
        if cfg.compile:
            # compiled wrappers share the prepared modules' parameters; lazy R1 (double backward, which
            # torch.compile does not support) keeps calling the eager global discriminator.
            self.discs = _DiscView(compiled_view(global_d), {n: compiled_view(d) for n, d in components.items()},
                                   r1_global_d=global_d)
        else:
            self.discs = _DiscView(global_d, components)
        self._prior_frozen = None

    def _freeze_prior(self, frozen: bool):
        if frozen == self._prior_frozen:
            return
        for name, p in self.raw_generator.generator.named_parameters():
            if not name.startswith("style_mlp."):
                p.requires_grad_(not frozen)
        self._prior_frozen = frozen

    def step(self, batch, step: int) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        self._freeze_prior(step < cfg.freeze_prior_steps)
        self._set_requires_grad(self.discriminators, False)
        # the RGB heads run only while their loss does: DDP (find_unused_parameters) would otherwise see them in the
        # forward outputs and wait forever for their gradients ("Expected to have finished reduction ...")
        use_unet = self.objective.unet_active(step, cfg.max_steps)
        with acc.autocast():
            out = self.generator(batch["lq"], batch["refs"], batch["ref_mask"], return_unet_images=use_unet)
            g_losses = self.objective.generator_losses(out, batch, self.discs, use_unet)
            g_total = sum(g_losses.values())
        self._optimizer_step(g_total, self.opt_g, self.sched_g, self.generator.parameters())
        self._set_requires_grad(self.discriminators, True)
        with acc.autocast():
            d_losses = self.objective.discriminator_losses(out.image.detach(), batch, self.discs,
                                                           with_r1=step % cfg.losses.r1_every == 0)
            d_total = sum(d_losses.values())
        self._optimizer_step(d_total, self.opt_d, self.sched_d, [p for d in self.discriminators for p in d.parameters()])
        self.ema_step()
        logs = {k: v.detach() for k, v in {**g_losses, **d_losses}.items()}
        logs["g_total"] = g_total.detach()
        return logs

    @torch.no_grad()
    def sample_images(self, batch):
        g = self.raw_generator
        was = g.training
        g.eval()
        n = min(4, batch["lq"].shape[0])
        out = g(batch["lq"][:n], batch["refs"][:n], batch["ref_mask"][:n]).image
        g.train(was)
        refs = batch["refs"][:n] * batch["ref_mask"][:n, :, None, None, None]
        return {"lq": batch["lq"][:n], "refs": refs, "output": out, "target": batch["target"][:n]}

    def export(self, folder: str | Path, push_to_hub: bool = False, summary: str = "", metrics_markdown: str = "") -> Path:
        """EMA weights through save_pretrained (Hub layout, rendered card); push_to_hub when asked."""
        g = self.raw_generator
        params = list(g.parameters())
        self.ema.store(params)
        self.ema.copy_to(params)
        export = PSPGAN(g.config)
        export.load_state_dict({k: v.detach().float().cpu() for k, v in g.state_dict().items()})
        self.ema.restore(params)
        card = dict(trained=True, training_summary=summary, metrics_markdown=metrics_markdown,
                    repo_id=self.cfg.hub_repo_id or f"psp-gan/{Path(folder).name}")
        readme = Path(folder) / "README.md"
        readme.unlink(missing_ok=True)  # save_pretrained keeps an existing card: re-render it
        export.save_pretrained(folder, model_card_kwargs=card)
        if push_to_hub:
            if not self.cfg.hub_repo_id:
                raise ValueError("push_to_hub needs hub_repo_id in the config")
            export.push_to_hub(self.cfg.hub_repo_id, model_card_kwargs=card)
        return Path(folder)


class _DiscView:
    """Gives the objective `global_d`, `components[name]` (prepared modules, or compiled wrappers of them) and
    `r1_global_d` (always the eager global discriminator, for the R1 penalty)."""

    def __init__(self, global_d, components, r1_global_d=None):
        self.global_d, self.components = global_d, components
        self.r1_global_d = global_d if r1_global_d is None else r1_global_d


def make_stage(cfg: TrainConfig, accelerator) -> Stage:
    stage = {"prior": PriorStage, "pspgan": PSPGANStage}[cfg.stage](cfg, accelerator)
    stage.build()
    return stage
