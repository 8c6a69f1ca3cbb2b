"""Face identity: the frozen ArcFace (MobileFaceNet) encoder and the FFHQ -> ArcFace template warp."""

from .encoder import EMBED_DIM, IdentityEncoder, default_onnx_path
from .templates import ffhq_to_arcface_matrix
from .warp import warp_ffhq_to_arcface

__all__ = [
    "EMBED_DIM",
    "IdentityEncoder",
    "default_onnx_path",
    "ffhq_to_arcface_matrix",
    "warp_ffhq_to_arcface",
]
