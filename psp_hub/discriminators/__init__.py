"""Discriminators of PSP-GAN: the whole-face StyleGAN2 discriminator and the facial-component patch discriminators."""

from .component import ComponentDiscriminator
from .layers import Blur, ConvLayer, EqualConv2d, EqualLinear
from .stylegan2 import (
    StyleGAN2Discriminator,
    StyleGAN2DiscriminatorConfig,
    minibatch_stddev,
)

__all__ = [
    "Blur",
    "ComponentDiscriminator",
    "ConvLayer",
    "EqualConv2d",
    "EqualLinear",
    "StyleGAN2Discriminator",
    "StyleGAN2DiscriminatorConfig",
    "minibatch_stddev",
]
