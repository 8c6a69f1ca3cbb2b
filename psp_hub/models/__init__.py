"""The PSP-GAN network and its parts."""

from .config import ConfigError, PSPGANConfig, tiny_config
from .outputs import PSPGANOutput, ReferenceCache
from .prior_loading import StateDictMismatchError, load_stylegan2_weights
from .pspgan import PSPGAN, default_model_dir
from .stylegan2 import StyleGAN2Generator

__all__ = [
    "PSPGAN",
    "ConfigError",
    "PSPGANConfig",
    "PSPGANOutput",
    "ReferenceCache",
    "StateDictMismatchError",
    "StyleGAN2Generator",
    "default_model_dir",
    "load_stylegan2_weights",
    "tiny_config",
]
