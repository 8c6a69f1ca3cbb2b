"""Training losses of PSP-GAN (paper section 3.2): perceptual, identity, adversarial and facial-component crops."""

from .components import (
    COMPONENTS,
    crop_components,
    default_component_sizes,
)
from .gan import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from .identity import IdentityLoss
from .perceptual import PerceptualConfig, PerceptualLoss
from .style import gram_matrix, gram_style_loss
from .vgg import VGGFeatureExtractor, load_vgg_features, vgg_layer_names

__all__ = [
    "PerceptualConfig",
    "PerceptualLoss",
    "IdentityLoss",
    "g_nonsaturating_loss",
    "d_logistic_loss",
    "r1_penalty",
    "COMPONENTS",
    "crop_components",
    "default_component_sizes",
    "gram_matrix",
    "gram_style_loss",
    "VGGFeatureExtractor",
    "load_vgg_features",
    "vgg_layer_names",
]
