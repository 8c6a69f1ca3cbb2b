"""The typed configuration of PSP-GAN: sizes, channel widths, fusion settings; validated on creation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from psp_hub.common.channels import stylegan2_channels
from psp_hub.common.config import ConfigError, build_config

FUSION_DIRECTIONS = ("reference_query", "input_query")
__all__ = ["FUSION_DIRECTIONS", "ConfigError", "PSPGANConfig", "tiny_config"]


@dataclass
class PSPGANConfig:
    """Everything needed to build a PSPGAN; serialised as the Hub's `config.json`.

    fusion_direction: "reference_query" is the paper's eq. (3), Attention(Q=F_p, K=F_LR, V=F_LR);
    "input_query" is the usual reference-based SR direction, Attention(Q=F_LR, K=F_p, V=F_p).
    Fusion runs with global attention up to `fusion_global_max_resolution`, with attention inside a
    `fusion_window` x `fusion_window` neighbourhood up to `fusion_local_max_resolution`, and not above.
    reference_selection: learn one weight per reference from how well it matches the input (models/selection.py)
    and mix the references by it instead of equally; False is the model as it was before the option existed.
    """

    out_size: int = 512
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 1
    narrow: float = 1.0
    max_channels: int = 512
    unet_narrow: float = 0.5
    unet_depth: int | None = None
    latent_channels: int = 64
    sft_half: bool = True
    fusion_direction: str = "reference_query"
    fusion_heads: int = 4
    fusion_max_dim: int = 256
    fusion_global_max_resolution: int = 32
    fusion_local_max_resolution: int = 128
    fusion_window: int = 3
    max_references: int = 4
    # The size E_p sees the references at (None: out_size). Fusion stops at fusion_local_max_resolution, so a
    # smaller E_p still feeds every fusion scale; a model grown from a smaller one can keep that one's trained E_p
    # whole (grown to 256 px with fresh input layers, E_p stopped telling people apart within 2,200 steps:
    # docs/release-model.md, round 3), and references cost a quarter as much to encode at half the size.
    reference_size: int | None = None
    # A learned per-reference mixing weight (models/selection.py, docs/reference-selection.md). Without it the
    # shipped reference_query models mix references by a plain mean: measured own-reference shares 0.49-0.50
    # against a lookalike, i.e. nothing in the model can prefer the right person's photo.
    reference_selection: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Reject values that cannot build a model, with a message naming the field."""
        s = self.out_size
        if not isinstance(s, int) or isinstance(s, bool):
            raise ConfigError(f"out_size must be an int, got {s!r}")
        if s < 64 or s > 1024:
            raise ConfigError(f"out_size must be between 64 and 1024 pixels, got {s}")
        if s & (s - 1):
            raise ConfigError(f"out_size must be a power of two (64, 128, 256, 512, 1024), got {s}")
        max_depth = self.log_size - 2
        if self.unet_depth is not None and not 1 <= self.unet_depth <= max_depth:
            raise ConfigError(
                f"unet_depth must be in 1..{max_depth} for out_size {s} (bottleneck >= 4 px), got {self.unet_depth}"
            )
        if self.fusion_direction not in FUSION_DIRECTIONS:
            raise ConfigError(f"fusion_direction must be one of {FUSION_DIRECTIONS}, got {self.fusion_direction!r}")
        if self.max_references < 1:
            raise ConfigError(f"max_references must be >= 1, got {self.max_references}")
        if self.fusion_window < 1 or self.fusion_window % 2 == 0:
            raise ConfigError(f"fusion_window must be an odd number >= 1, got {self.fusion_window}")
        if self.fusion_local_max_resolution < self.fusion_global_max_resolution:
            raise ConfigError("fusion_local_max_resolution must be >= fusion_global_max_resolution")
        for name in (
            "style_dim",
            "n_mlp",
            "channel_multiplier",
            "max_channels",
            "latent_channels",
            "fusion_heads",
            "fusion_max_dim",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.narrow <= 0 or self.unet_narrow <= 0:
            raise ConfigError("narrow and unet_narrow must be > 0")
        for r in self.fusion_resolutions:
            if self.fusion_dim(r) % self.fusion_heads:
                raise ConfigError(
                    f"fusion width {self.fusion_dim(r)} at {r} px is not divisible by fusion_heads={self.fusion_heads}"
                )
        self._validate_reference_size()
        if self.reference_selection and not self.fusion_resolutions:
            raise ConfigError("reference_selection needs at least one fusion resolution (fusion_local_max_resolution)")
        for r in self.resolutions:
            if self.gan_channels(r) < 2 or self.unet_channels(r) < 2:
                raise ConfigError(f"channels at {r} px are below 2: raise narrow/unet_narrow")

    def _validate_reference_size(self) -> None:
        ref = self.reference_size
        if ref is None:
            return
        need = max(self.fusion_resolutions, default=self.bottleneck_size)
        if not isinstance(ref, int) or isinstance(ref, bool) or ref & (ref - 1) or not need <= ref <= self.out_size:
            raise ConfigError(
                f"reference_size must be a power of two between the largest fusion resolution ({need}) and "
                f"out_size ({self.out_size}), or null; got {ref!r}"
            )

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def depth(self) -> int:
        """Number of U-Net down/upsamples: the paper's seven at 512 px, down to a 4 px bottleneck."""
        return self.unet_depth if self.unet_depth is not None else self.log_size - 2

    @property
    def bottleneck_size(self) -> int:
        return self.out_size >> self.depth

    @property
    def num_latent(self) -> int:
        """W+ codes the StyleGAN2 synthesis network takes (two per resolution, as in StyleGAN2)."""
        return self.log_size * 2 - 2

    @property
    def resolutions(self) -> list[int]:
        """U-Net resolutions from the bottleneck up to the output size."""
        return [self.bottleneck_size << i for i in range(self.depth + 1)]

    @property
    def fusion_resolutions(self) -> list[int]:
        return [r for r in self.resolutions if r <= self.fusion_local_max_resolution]

    @property
    def reference_input_size(self) -> int:
        """The size references are resized to before E_p."""
        return self.reference_size or self.out_size

    def fusion_is_global(self, resolution: int) -> bool:
        return resolution <= self.fusion_global_max_resolution

    def gan_channels(self, resolution: int) -> int:
        """Width of the StyleGAN2 prior at this resolution."""
        return stylegan2_channels(resolution, self.channel_multiplier, self.narrow, self.max_channels)

    def unet_channels(self, resolution: int) -> int:
        """Width of the U-Net at this resolution: StyleGAN2's table (multiplier 1) x unet_narrow."""
        return stylegan2_channels(resolution, 1, self.unet_narrow, self.max_channels)

    def fusion_dim(self, resolution: int) -> int:
        return min(self.unet_channels(resolution), self.fusion_max_dim)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PSPGANConfig:
        """Build from a dict (e.g. config.json), strictly: unknown keys and wrongly typed values are ConfigErrors."""
        return build_config(cls, values)


def tiny_config(out_size: int = 64, **overrides) -> PSPGANConfig:
    """A CPU-sized configuration for tests and smoke runs (narrow channels, small style space)."""
    values = {
        "out_size": out_size,
        "style_dim": 32,
        "n_mlp": 2,
        "narrow": 1 / 16,
        "max_channels": 32,
        "unet_narrow": 1 / 32,
        "latent_channels": 8,
        "fusion_heads": 2,
        "fusion_max_dim": 16,
        "fusion_global_max_resolution": 16,
        "fusion_local_max_resolution": 32,
        "max_references": 4,
    }
    values.update(overrides)
    return PSPGANConfig(**values)
