"""Evaluation metrics: PSNR, SSIM, LPIPS (VGG-16 v0.1), ArcFace and dlib identity, face detail (sharpness), and the
Fréchet distance of a set of images to real faces (VGG-16 features)."""

from .dlib_identity import FFHQ_DLIB_BOX, SAME_PERSON_THRESHOLD, DlibIdentity, DlibIdentityConfig
from .frechet import FeatureMoments, GaussianFit, VGGPoolFeatures, fit_features, frechet_distance
from .identity import identity_similarity
from .lpips import LPIPS
from .pixel import psnr, ssim
from .sharpness import face_detail, geometric_mean, laplacian_variance, sharpness_ratio

__all__ = [
    "FFHQ_DLIB_BOX",
    "LPIPS",
    "SAME_PERSON_THRESHOLD",
    "DlibIdentity",
    "DlibIdentityConfig",
    "FeatureMoments",
    "GaussianFit",
    "VGGPoolFeatures",
    "face_detail",
    "fit_features",
    "frechet_distance",
    "geometric_mean",
    "identity_similarity",
    "laplacian_variance",
    "psnr",
    "sharpness_ratio",
    "ssim",
]
