"""Evaluation metrics: PSNR, SSIM, LPIPS (VGG-16 v0.1), ArcFace identity similarity and dlib identity distance."""

from .dlib_identity import FFHQ_DLIB_BOX, SAME_PERSON_THRESHOLD, DlibIdentity, DlibIdentityConfig
from .identity import identity_similarity
from .lpips import LPIPS
from .pixel import psnr, ssim

__all__ = [
    "FFHQ_DLIB_BOX",
    "LPIPS",
    "SAME_PERSON_THRESHOLD",
    "DlibIdentity",
    "DlibIdentityConfig",
    "identity_similarity",
    "psnr",
    "ssim",
]
