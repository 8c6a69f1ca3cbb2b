"""Training losses of PSP-GAN (paper section 3.2): perceptual, identity, adversarial and facial-component crops."""

from .components import (
    COMPONENTS,
    crop_components,
    default_component_sizes,
)
from .gan import (
    d_logistic_loss,
    g_nonsaturating_loss,
    g_nonsaturating_terms,
    r1_penalty,
    r1_penalty_of,
    r1_penalty_traced,
)
from .identity import IdentityLoss
from .perceptual import PerceptualConfig, PerceptualLoss
from .style import gram_matrix, gram_style_loss
from .vgg import VGGFeatureExtractor, load_vgg_features, vgg_layer_names

__all__ = [
    "COMPONENTS",
    "IdentityLoss",
    "PerceptualConfig",
    "PerceptualLoss",
    "VGGFeatureExtractor",
    "crop_components",
    "d_logistic_loss",
    "default_component_sizes",
    "g_nonsaturating_loss",
    "g_nonsaturating_terms",
    "gram_matrix",
    "gram_style_loss",
    "load_vgg_features",
    "r1_penalty",
    "r1_penalty_of",
    "r1_penalty_traced",
    "vgg_layer_names",
]
