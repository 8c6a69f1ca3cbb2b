"""The bottom layer: facts every subpackage shares (face geometry, image conversions, channel widths, config loading,
frozen networks), image loading (`imageio`) and the shared folder's paths (`paths`).

It imports no other psp_hub subpackage, so anything may import it without a cycle.
"""

from .channels import STYLEGAN2_BASE_CHANNELS, stylegan2_channel_table, stylegan2_channels
from .config import ConfigError, apply_overrides, build_config, deep_merge, load_config, load_yaml
from .frozen import FrozenEval
from .geometry import (
    ARCFACE_SIZE,
    ARCFACE_TEMPLATE_112,
    COMPONENTS,
    FFHQ_TEMPLATE_512,
    FLIP_ORDER,
    component_boxes,
    ffhq_template,
    fit_similarity,
    flip_landmarks,
    similarity_scale,
)
from .images import (
    image_to_tensor,
    resize_to,
    round_to_uint8,
    signed_to_unit,
    tensor_to_image,
    tensor_to_pil,
    to_unit,
    unit_to_signed,
)

__all__ = [
    "ARCFACE_SIZE",
    "ARCFACE_TEMPLATE_112",
    "COMPONENTS",
    "FFHQ_TEMPLATE_512",
    "FLIP_ORDER",
    "STYLEGAN2_BASE_CHANNELS",
    "ConfigError",
    "FrozenEval",
    "apply_overrides",
    "build_config",
    "component_boxes",
    "deep_merge",
    "ffhq_template",
    "fit_similarity",
    "flip_landmarks",
    "image_to_tensor",
    "load_config",
    "load_yaml",
    "resize_to",
    "round_to_uint8",
    "signed_to_unit",
    "similarity_scale",
    "stylegan2_channel_table",
    "stylegan2_channels",
    "tensor_to_image",
    "tensor_to_pil",
    "to_unit",
    "unit_to_signed",
]
