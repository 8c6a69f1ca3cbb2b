"""psp_hub: PSP-GAN, personalized face super-resolution with a StyleGAN2 prior and reference photos."""

from .models import (
    PSPGAN,
    ConfigError,
    PSPGANConfig,
    PSPGANOutput,
    ReferenceCache,
    StateDictMismatchError,
    StyleGAN2Generator,
    default_model_dir,
    load_stylegan2_weights,
    tiny_config,
)

__version__ = "0.1.0"
# The repository's default weights as an absolute path, so `PSPGAN.from_pretrained(psp_hub.BUNDLED_MODEL)` works from
# any working directory (a relative "checkpoints/psp-gan-256" elsewhere would be taken for a Hub id).
BUNDLED_MODEL = str(default_model_dir())
__all__ = [
    "BUNDLED_MODEL",
    "PSPGAN",
    "ConfigError",
    "PSPGANConfig",
    "PSPGANOutput",
    "ReferenceCache",
    "StateDictMismatchError",
    "StyleGAN2Generator",
    "__version__",
    "default_model_dir",
    "load_stylegan2_weights",
    "tiny_config",
]
