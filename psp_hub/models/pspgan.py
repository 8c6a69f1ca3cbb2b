"""PSP-GAN: the degraded input's U-Net, the references' U-Net, attention fusion, and a StyleGAN2 prior.

    lq ──E_LR encoder──► bottleneck ──fuse──► W+ latents ─────────────┐
                              │                                        ▼
                              └─E_LR decoder: at each scale, fuse F_p ─► SFT (scale, shift) ─► StyleGAN2 ─► image
    refs ──E_p (per reference)──► F_p at each fusion scale ──(cacheable)──┘

With `reference_selection`, the input's and the references' bottleneck features also give one weight per reference
(selection.py), and every fusion scale mixes the references by those weights.

Packaged as a Hugging Face Hub model: `save_pretrained` / `from_pretrained` / `push_to_hub`, with
`config.json` from `PSPGANConfig`, `model.safetensors`, and a model card from `model_card.md`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.nn import functional as F

from psp_hub.common.images import resize_to

from .config import ConfigError, PSPGANConfig
from .fusion import CrossAttentionFusion
from .hub_loading import HubLoadingMixin
from .outputs import PSPGANOutput, ReferenceCache
from .prior_loading import load_stylegan2_weights
from .selection import SELECTION_KEY, ReferenceSelection
from .stylegan2 import StyleGAN2Generator
from .unet import UNetExtractor


class SFTHead(nn.Module):
    """Fused U-Net features at one scale -> (scale, shift) for the generator's layer there (zero at init)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.conv2(F.leaky_relu(self.conv1(feat), 0.2)).chunk(2, dim=1)
        return scale, shift


class PSPGAN(
    HubLoadingMixin,
    nn.Module,
    PyTorchModelHubMixin,
    library_name="psp-gan",
    pipeline_tag="image-to-image",
    license="other",
    tags=["face-restoration", "super-resolution", "reference-based", "stylegan2", "psp-gan"],
    repo_url="https://github.com/psp-gan/psp-gan",
):
    """Personalized face super-resolution (PSP-GAN): restore `lq` guided by 0..K reference photos."""

    def __init__(self, config: PSPGANConfig | dict | None = None):
        super().__init__()
        config = config if config is not None else PSPGANConfig()
        if isinstance(config, dict):  # config.json read back by from_pretrained
            config = PSPGANConfig.from_dict(config)
        if not isinstance(config, PSPGANConfig):
            raise ConfigError(f"config must be a PSPGANConfig, got {type(config).__name__}")
        self.config = config
        self._hub_mixin_config = config  # what save_pretrained writes as config.json
        c = config
        res = c.resolutions
        self.lr_unet = UNetExtractor(c, with_rgb=True)
        self.ref_unet = UNetExtractor(c, decode_up_to=max(c.fusion_resolutions), input_size=c.reference_input_size)
        self.fusion = nn.ModuleDict(
            {
                str(r): CrossAttentionFusion(
                    c.unet_channels(r),
                    c.fusion_dim(r),
                    c.fusion_heads,
                    c.fusion_direction,
                    None if c.fusion_is_global(r) else c.fusion_window,
                )
                for r in c.fusion_resolutions
            }
        )
        b = c.bottleneck_size
        # one selection per forward, at the lowest fusion scale (the bottleneck): see selection.py
        self.selection = ReferenceSelection(c.unet_channels(b), c.fusion_dim(b)) if c.reference_selection else None
        self.latent_reduce = nn.Conv2d(c.unet_channels(b), c.latent_channels, 1)
        self.latent_head = nn.Linear(c.latent_channels * b * b, c.num_latent * c.style_dim)
        self.generator = StyleGAN2Generator(
            c.out_size, c.style_dim, c.n_mlp, c.channel_multiplier, c.narrow, c.max_channels, c.sft_half
        )
        # Restoration feeds W+ codes straight to the synthesis network, so the mapping MLP is unused here;
        # it stays (frozen) so that a full StyleGAN2 prior loads intact.
        self.generator.style_mlp.requires_grad_(False)
        self.sft = nn.ModuleDict({str(r): SFTHead(c.unet_channels(r), self.generator.sft_channels(r)) for r in res[1:]})

    # -- the prior ----------------------------------------------------------------------------------
    def load_prior(self, source) -> PSPGAN:
        """Load a pretrained StyleGAN2 (file or state dict, our/GFPGAN-clean layout) into the generator."""
        load_stylegan2_weights(self.generator, source)
        return self

    # -- references -------------------------------------------------------------------------------
    def encode_references(
        self, refs: torch.Tensor | None, ref_mask: torch.Tensor | None = None
    ) -> ReferenceCache | None:
        """refs (B, K, 3, S, S) in [-1, 1] (K may be 0; None = no references) -> ReferenceCache, or None if empty.

        `ref_mask` (B, K) bool marks which slots hold a photo (default: all); order does not matter.
        """
        if refs is None or refs.shape[1] == 0:
            return None
        if refs.dim() != 5 or refs.shape[2] != 3:
            raise ValueError(f"refs must be (B, K, 3, H, W), got {tuple(refs.shape)}")
        b, k = refs.shape[:2]
        if k > self.config.max_references:
            raise ValueError(f"{k} references given; this model takes at most {self.config.max_references}")
        mask = (
            torch.ones(b, k, dtype=torch.bool, device=refs.device)
            if ref_mask is None
            else ref_mask.to(refs.device, torch.bool)
        )
        if mask.shape != (b, k):
            raise ValueError(f"ref_mask must be (B, K) = {(b, k)}, got {tuple(mask.shape)}")
        feats = self.reference_features(refs.flatten(0, 1))
        prepared = {}
        for r in self.config.fusion_resolutions:
            f = feats[r].unflatten(0, (b, k))
            prepared[r] = self.fusion[str(r)].prepare(f)
        if self.selection is not None:
            r = self.config.bottleneck_size
            prepared[r] = {**prepared[r], **self.selection.prepare(feats[r].unflatten(0, (b, k)))}
        return ReferenceCache(prepared, mask)

    def reference_features(self, photos: torch.Tensor) -> dict[int, torch.Tensor]:
        """E_p's features by resolution for reference photos (N, 3, S, S) in [-1, 1], resized to the reference size."""
        return self.ref_unet(resize_to(photos, self.config.reference_input_size))

    # -- restoration ------------------------------------------------------------------------------
    def restore(
        self,
        lq: torch.Tensor,
        cache: ReferenceCache | None = None,
        *,
        strength: float = 1.0,
        randomize_noise: bool | None = None,
        return_unet_images: bool = False,
        return_contributions: bool = False,
    ) -> PSPGANOutput:
        """Degraded faces (B, 3, H, W) in [-1, 1] + cached references -> PSPGANOutput.

        `strength` scales how much the references change the features (0 = blind restoration, 1 = trained
        behaviour). Noise is random in training and fixed (the stored buffers) in eval mode.
        `return_unet_images` also runs the E_LR decoder's RGB heads (only the U-Net loss needs them; skipped
        otherwise so that inference does no extra work and DDP does not wait for gradients they never get).
        `return_contributions` also reports each reference's share (see `PSPGANOutput.contributions`): with
        reference selection the weights the model mixed by, otherwise a measure of the fusion's attention that does
        extra attention work, so it is off unless asked.
        """
        if lq.dim() != 4 or lq.shape[1] != 3:
            raise ValueError(f"lq must be (B, 3, H, W), got {tuple(lq.shape)}")
        randomize_noise = self.training if randomize_noise is None else randomize_noise
        x = resize_to(lq, self.config.out_size)
        cache = cache.for_batch(x.shape[0]) if cache is not None else None
        feat, skips = self.lr_unet.encode(x)
        weights = self._selection_weights(feat, cache)
        masses = [] if return_contributions and weights is None else None
        feat = self._fuse(feat, cache, strength, masses, weights)
        latents = self.latent_head(self.latent_reduce(feat).flatten(1)).view(
            -1, self.config.num_latent, self.config.style_dim
        )
        conditions, unet_images = {}, []
        for i in range(len(self.lr_unet.up)):
            feat = self._fuse(self.lr_unet.up_step(i, feat, skips), cache, strength, masses, weights)
            r = feat.shape[-1]
            conditions[r] = self.sft[str(r)](feat)
            if return_unet_images:
                unet_images.append(self.lr_unet.rgb(i, feat))
        image = self.generator.synthesis(latents, conditions, randomize_noise=randomize_noise)
        if weights is None and self.selection is not None:  # selection on, no references
            weights = x.new_zeros(x.shape[0], 0)
        if return_contributions and weights is not None:  # the weights the model mixed by
            contributions = weights.detach()
        else:
            contributions = self._contributions(masses, cache, x)
        return PSPGANOutput(
            image=image,
            unet_images=tuple(unet_images),
            latents=latents,
            contributions=contributions,
            reference_weights=weights,
        )

    def forward(
        self,
        lq: torch.Tensor,
        refs: torch.Tensor | None = None,
        ref_mask: torch.Tensor | None = None,
        *,
        strength: float = 1.0,
        randomize_noise: bool | None = None,
        return_unet_images: bool = False,
        return_contributions: bool = False,
    ) -> PSPGANOutput:
        """Restore `lq` (B, 3, H, W) with references `refs` (B, K, 3, S, S) and their mask (B, K); see `restore`."""
        return self.restore(
            lq,
            self.encode_references(refs, ref_mask),
            strength=strength,
            randomize_noise=randomize_noise,
            return_unet_images=return_unet_images,
            return_contributions=return_contributions,
        )

    def _fuse(
        self,
        feat: torch.Tensor,
        cache: ReferenceCache | None,
        strength: float,
        masses: list[torch.Tensor] | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        key = str(feat.shape[-1])
        if cache is None or key not in self.fusion:
            return feat
        prepared = cache.features[feat.shape[-1]]
        if masses is not None:
            masses.append(self.fusion[key].reference_mass(feat, prepared, cache.mask))
        return self.fusion[key](feat, prepared, cache.mask, strength, weights)

    def _selection_weights(self, feat: torch.Tensor, cache: ReferenceCache | None) -> torch.Tensor | None:
        """(B, K) reference weights from the bottleneck features; None without selection or references."""
        if self.selection is None or cache is None:
            return None
        prepared = cache.features[feat.shape[-1]]
        if SELECTION_KEY not in prepared:
            raise ValueError("this reference cache was encoded without reference selection: encode it with this model")
        return self.selection(feat, prepared, cache.mask)

    @staticmethod
    def _contributions(
        masses: list[torch.Tensor] | None, cache: ReferenceCache | None, x: torch.Tensor
    ) -> torch.Tensor | None:
        """Mean over the fusion scales of each reference's attention share; (B, 0) without references."""
        if masses is None:
            return None
        if cache is None or not masses:
            return torch.zeros(x.shape[0], 0, device=x.device)
        mean = torch.stack(masses).mean(dim=0)
        return mean / mean.sum(dim=1, keepdim=True).clamp_min(1e-12)

    # -- model card -------------------------------------------------------------------------------
    def generate_model_card(self, *args, **kwargs):
        from ..model_card import render_model_card

        return render_model_card(self, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def default_model_dir() -> Path:
    """Where the bundled default weights live in the repository (Hub layout)."""
    return Path(__file__).resolve().parents[2] / "checkpoints" / "psp-gan-256"
