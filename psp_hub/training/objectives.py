"""The paper's objective (eq. 5-9) for PSP-GAN as one module: generator terms and discriminator terms.

Generator: L1 + perceptual (VGG) + identity (ArcFace-trained embedding) + U-Net reconstruction
(decoder RGB at every scale vs the downsampled target) + global GAN + left-eye/right-eye/mouth GAN
(+ GFPGAN's gram-matrix style loss on the component discriminators' features).
Discriminators: logistic loss with lazy R1 on the global one.
Optionally: the reference selection term (losses.reference_selection, on batches with distractors: distractors.py).
Options: DiffAugment on everything the global discriminator sees (`losses.diffaug`), and the mixed-resolution rule
(reconstruction terms at each sample's native size, only native faces as reals; mixed_resolution.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from psp_hub.discriminators import ComponentDiscriminator, StyleGAN2Discriminator
from psp_hub.identity import IdentityEncoder
from psp_hub.losses import (
    COMPONENTS,
    IdentityLoss,
    PerceptualConfig,
    PerceptualLoss,
    crop_components,
    d_logistic_loss,
    default_component_sizes,
    g_nonsaturating_loss,
    g_nonsaturating_terms,
    gram_style_loss,
    r1_penalty_of,
)

from .config import LossWeights
from .diffaugment import DiffAugment
from .distractors import DISTRACTOR_KEY, reference_selection_loss
from .mixed_resolution import at_native, sharp_mean, sharp_only

GFPGAN_STYLE_LAYER_WEIGHTS = (0.5, 1.0)  # GFPGAN: gram loss on the two component-D feature maps weighted 0.5 and 1


ADVERSARIAL_TERMS = ("gan", "component_gan", "component_style")  # what the discriminators' judgement drives
COMPONENT_TERMS = ("component_gan", "component_style")  # the eye/mouth discriminators' part of them


def component_crop_sizes(size: int) -> dict[str, int]:
    """GFPGAN's patch sizes (eyes 80, mouth 120 at 512 px) scaled to the face, rounded to multiples of 4, >= 16."""
    return {name: max(16, round(s / 4) * 4) for name, s in default_component_sizes(size).items()}


def gan_reals(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The faces the discriminators learn as real and their component boxes: the batch's `gan_real` faces where it
    has them (the mixed-resolution rule), else its targets."""
    return batch.get("gan_real", batch["target"]), batch.get("gan_real_boxes", batch["boxes"])


class Discriminators(nn.Module):
    """The global StyleGAN2 discriminator and the three component discriminators, trained together."""

    def __init__(self, size: int, narrow: float = 1.0, component_channels: int = 64):
        super().__init__()
        self.crop_sizes = component_crop_sizes(size)
        self.global_d = StyleGAN2Discriminator(size, channel_multiplier=1, narrow=narrow)
        self.components = nn.ModuleDict(
            {
                name: ComponentDiscriminator(self.crop_sizes[name], base_channels=component_channels)
                for name in COMPONENTS
            }
        )


class DiscView:
    """What the objective calls: `global_d`, `components[name]` (modules, or compiled wrappers of them) and
    `r1_global_d`, always the eager global discriminator (`r1_penalty` differentiates its graph twice, which compiled
    graphs do not allow; `r1_penalty_traced` traces it into a compiled function of its own)."""

    def __init__(self, global_d, components, r1_global_d=None):
        self.global_d, self.components = global_d, components
        self.r1_global_d = global_d if r1_global_d is None else r1_global_d


class PSPGANObjective(nn.Module):
    """Computes every generator and discriminator term of the paper's objective for one batch.

    The loss networks (VGG, identity encoder) are frozen and stay in eval mode whatever `train()` is called with.
    `levels` (data/mixing.native_levels) turns on the mixed-resolution rule for batches that carry `native_px`.
    `adversarial_from`: the step the discriminators started learning at (0; a continued run's first step when its
    hand-over brought none), where the adversarial warm-up starts.
    """

    def __init__(
        self,
        weights: LossWeights,
        size: int,
        identity: IdentityEncoder | None = None,
        levels: tuple[int, ...] = (),
        adversarial_from: int = 0,
    ):
        super().__init__()
        self.w, self.size, self.levels = weights, size, tuple(levels)
        self.adversarial_from = adversarial_from
        self.augment = DiffAugment(weights.diffaug)
        self.crop_sizes = component_crop_sizes(size)
        self.perceptual = (
            PerceptualLoss(
                PerceptualConfig(network=weights.perceptual_network, weights_path=weights.perceptual_weights_path)
            )
            if weights.perceptual > 0
            else None
        )
        self.identity = (
            IdentityLoss(identity or IdentityEncoder.from_onnx(), weights.identity_criterion)
            if weights.identity > 0
            else None
        )
        self.requires_grad_(False)  # its networks keep themselves in eval mode (FrozenEval: train() means eval)

    @property
    def component_origin(self) -> int:
        """The step from which the eye/mouth terms count and their discriminators train."""
        return max(self.w.component_from, self.adversarial_from)

    def components_active(self, step: int) -> bool:
        """Whether the eye/mouth terms are weighted and their discriminators train at this step."""
        return (self.w.component_gan > 0 or self.w.component_style > 0) and step >= self.component_origin

    def _ramp(self, step: int, origin: int) -> float:
        warmup = self.w.adversarial_warmup
        return 1.0 if warmup <= 0 else min(1.0, max(0.0, (step - origin) / warmup))

    def ramped(self, losses: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """`losses` with the adversarial terms scaled by their warm-up ramps ((step - origin) / adversarial_warmup,
        in [0, 1]): the global GAN's from `adversarial_from`, the eye/mouth terms' from `component_origin`."""
        gan, comp = self._ramp(step, self.adversarial_from), self._ramp(step, self.component_origin)
        if gan == 1.0 and comp == 1.0:
            return losses
        scales = {"gan": gan} | dict.fromkeys(COMPONENT_TERMS, comp)
        return {k: v * scales[k] if k in scales else v for k, v in losses.items()}

    def unet_active(self, step: int, max_steps: int) -> bool:
        """Whether the U-Net reconstruction term counts at this step (weighted, and before `unet_until`)."""
        return self.w.unet > 0 and step < self.w.unet_until * max_steps

    def generator_losses(
        self, out, batch, discs: DiscView, use_unet: bool, components: bool = True
    ) -> dict[str, torch.Tensor]:
        """Weighted generator terms (each already multiplied by its weight), by name.

        `use_unet` (from `unet_active`) adds the U-Net reconstruction term, so `out` must then hold `unet_images`
        (the model called with `return_unet_images=True`); otherwise they are not needed. `components=False` (from
        `components_active`) logs the eye/mouth terms as zeros without running their discriminators.
        """
        target, fake = batch["target"], out.image
        losses: dict[str, torch.Tensor] = {}
        w, levels = self.w, self.levels
        native = batch.get("native_px") if levels else None
        if use_unet and not out.unet_images:  # a silently missing term would train a different objective
            raise ValueError("use_unet needs the U-Net images: call the model with return_unet_images=True")
        if w.l1 > 0:
            losses["l1"] = w.l1 * at_native(F.l1_loss, fake, target, native, levels)
        if self.perceptual is not None:
            losses["perceptual"] = w.perceptual * at_native(self.perceptual, fake, target, native, levels)
        if self.identity is not None:
            losses["identity"] = w.identity * at_native(self.identity, fake, target, native, levels)
        if use_unet:
            terms = [
                at_native(
                    F.l1_loss,
                    img,
                    F.interpolate(target, size=img.shape[-2:], mode="bilinear", align_corners=False, antialias=True),
                    native,
                    levels,
                )
                for img in out.unet_images
            ]
            losses["unet"] = w.unet * torch.stack(terms).sum()
        if w.gan > 0:
            losses["gan"] = w.gan * g_nonsaturating_loss(discs.global_d(self.augment(fake)))
        if (w.component_gan > 0 or w.component_style > 0) and components:
            losses |= self._component_terms(fake, target, batch, discs, native)
        elif w.component_gan > 0 or w.component_style > 0:
            zero = fake.new_zeros((), dtype=torch.float32)
            losses |= {k: zero for k in COMPONENT_TERMS if getattr(w, k) > 0}
        if w.reference_selection > 0:
            losses["reference_selection"] = w.reference_selection * self._selection_term(out, batch)
        return losses

    @staticmethod
    def _selection_term(out, batch) -> torch.Tensor:
        """The reference selection loss, refusing what would silently train without it."""
        if out.reference_weights is None:
            raise ValueError("losses.reference_selection needs a model with reference_selection: true")
        if DISTRACTOR_KEY not in batch:
            raise ValueError(
                "losses.reference_selection needs batches with distractors: pass the batch through "
                "training.distractors.add_distractors before the generator's forward"
            )
        return reference_selection_loss(out.reference_weights, batch["ref_mask"], batch[DISTRACTOR_KEY])

    def _component_terms(self, fake, target, batch, discs: DiscView, native) -> dict[str, torch.Tensor]:
        """The eye/mouth discriminators' generator terms: the GAN term, and the gram style loss against the target's
        own parts; under the mixed-resolution rule both count only for samples native at full size."""
        w = self.w
        sharp = None if native is None else native == self.size
        fake_parts = crop_components(fake, batch["boxes"], self.crop_sizes)
        real_parts = crop_components(target, batch["boxes"], self.crop_sizes)
        comp_gan, comp_style = fake.new_zeros((), dtype=torch.float32), fake.new_zeros((), dtype=torch.float32)
        for name in COMPONENTS:
            logits, feats = discs.components[name](fake_parts[name], return_feats=True)
            comp_gan = comp_gan + sharp_mean(g_nonsaturating_terms(logits), sharp)
            if w.component_style > 0:
                with torch.no_grad():
                    _, real_feats = discs.components[name](real_parts[name], return_feats=True)
                feats = sharp_only(feats, real_feats, sharp)  # paired with the target's own parts
                comp_style = comp_style + gram_style_loss(feats, real_feats, GFPGAN_STYLE_LAYER_WEIGHTS)
        terms = {}
        if w.component_gan > 0:
            terms["component_gan"] = w.component_gan * comp_gan
        if w.component_style > 0:
            terms["component_style"] = w.component_style * comp_style
        return terms

    def discriminator_losses(
        self, fake: torch.Tensor, batch, discs: DiscView, with_r1: bool, components: bool = True
    ) -> dict[str, torch.Tensor]:
        """Logistic losses of the global and component discriminators, plus lazy R1 (scaled by its interval).

        `components=False`: the eye/mouth discriminators do not run (no gradient, so Adam leaves them and their
        moments as they are) and their loss is logged as zero.

        The reals are the batch's `gan_real` faces where it has them (the mixed-resolution rule), else its targets;
        the global discriminator sees both through DiffAugment, and R1 is taken through it (D composed with T).
        """
        real, real_boxes = gan_reals(batch)
        # a bf16 output in the reals' dtype: one compiled graph per discriminator for both, not one per dtype
        fake, aug = fake.detach().to(real.dtype), self.augment
        losses = {"d_global": d_logistic_loss(discs.global_d(aug(real)), discs.global_d(aug(fake)))}
        if (self.w.component_gan > 0 or self.w.component_style > 0) and not components:
            losses["d_components"] = fake.new_zeros((), dtype=torch.float32)
        elif self.w.component_gan > 0 or self.w.component_style > 0:
            fake_parts = crop_components(fake, batch["boxes"], self.crop_sizes)
            real_parts = crop_components(real, real_boxes, self.crop_sizes)
            losses["d_components"] = sum(
                d_logistic_loss(discs.components[n](real_parts[n]), discs.components[n](fake_parts[n]))
                for n in COMPONENTS
            )
        if with_r1:
            losses |= self.r1_terms(batch, discs)
        return losses

    def r1_terms(self, batch, discs: DiscView, traced: bool = False) -> dict[str, torch.Tensor]:
        """Lazy R1 on the eager global discriminator, through DiffAugment, scaled by its interval: `r1_penalty`
        (eager code: it differentiates the discriminator's graph again), or with `traced` `r1_penalty_traced` (the
        input gradient inside, a form torch.compile can compile)."""
        penalty = r1_penalty_of(lambda images: discs.r1_global_d(self.augment(images)), gan_reals(batch)[0], traced)
        return {"r1": self.w.r1_gamma / 2 * penalty * self.w.r1_every}
