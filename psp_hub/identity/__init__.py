"""Face identity: the frozen ArcFace (MobileFaceNet) encoder and the FFHQ -> ArcFace template warp."""

from .encoder import EMBED_DIM, IdentityEncoder, default_onnx_path
from .templates import (
    ARCFACE_TEMPLATE_112,
    FFHQ_TEMPLATE_512,
    ffhq_template,
    ffhq_to_arcface_matrix,
    umeyama_similarity,
)
from .warp import warp_ffhq_to_arcface

__all__ = [
    "IdentityEncoder",
    "EMBED_DIM",
    "default_onnx_path",
    "warp_ffhq_to_arcface",
    "ffhq_to_arcface_matrix",
    "ffhq_template",
    "umeyama_similarity",
    "FFHQ_TEMPLATE_512",
    "ARCFACE_TEMPLATE_112",
]
