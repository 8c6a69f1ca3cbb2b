"""Fréchet distance between two sets of images in a feature space (FID's formula, Heusel et al. 2017): how far an
unconditional prior's samples are from real faces, as one number a training curve can follow.

The feature network is the shared VGG-16 (ImageNet), relu5_3 averaged over space (512 values a face) at 224 px: a late,
spatially pooled layer of the project's one ImageNet classifier, in the place of FID's Inception pool3 (not shipped
here). So the numbers are "FD-VGG16": comparable with each other at the same sample count, not with published FIDs.
Like FID it is biased upward at small sample counts, so sets are compared at equal counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..common.frozen import FrozenEval
from ..losses.vgg import VGGFeatureExtractor

FEATURE_LAYER = "relu5_3"
FEATURE_SIZE = 224  # VGG's training resolution: faces of every size are resampled to it


class VGGPoolFeatures(FrozenEval):
    """(B, 3, H, W) RGB in [-1, 1] -> (B, 512) float32: VGG-16 relu5_3 averaged over space."""

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.vgg = VGGFeatureExtractor([FEATURE_LAYER], weights_path=weights_path)
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features of a batch of images of any square size."""
        x = F.interpolate(
            images.float(), size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
        return self.vgg(x)[FEATURE_LAYER].float().mean(dim=(2, 3))


@dataclass
class GaussianFit:
    """Mean and covariance of a set's features, and how many images they came from."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    def save(self, path: str | Path) -> None:
        """As .npz (mean, cov, count), so a real set's statistics are computed once."""
        np.savez(path, mean=self.mean, cov=self.cov, count=self.count)

    @classmethod
    def load(cls, path: str | Path) -> GaussianFit:
        """A fit written by `save`."""
        with np.load(path) as f:
            return cls(f["mean"], f["cov"], int(f["count"]))


class FeatureMoments:
    """Running sums of feature vectors and their outer products in float64: batches in, one Gaussian fit out."""

    def __init__(self) -> None:
        self.count = 0
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def update(self, features: torch.Tensor) -> None:
        """Add a (B, D) batch of features."""
        f = features.detach().to("cpu", torch.float64).numpy()
        if self._sum is None:
            self._sum, self._outer = np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1]))
        self._sum += f.sum(axis=0)
        self._outer += f.T @ f
        self.count += f.shape[0]

    def fit(self) -> GaussianFit:
        """The mean and the unbiased covariance (as numpy.cov) of everything added."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        mean = self._sum / self.count
        cov = (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return GaussianFit(mean, cov, self.count)


def fit_features(batches, net: torch.nn.Module) -> GaussianFit:
    """The Gaussian fit of `net`'s features over an iterable of image batches."""
    moments = FeatureMoments()
    for images in batches:
        moments.update(net(images))
    return moments.fit()


def frechet_distance(a: GaussianFit, b: GaussianFit) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^1/2), the trace of the root taken as the sum of the
    square roots of S_a S_b's eigenvalues (as torchmetrics' FID does): no matrix square root to fail on the singular
    products that fewer images than features give, whose rounding leaves tiny negative or complex eigenvalues."""
    diff = a.mean - b.mean
    root_trace = np.sqrt(np.linalg.eigvals(a.cov @ b.cov).astype(complex)).real.sum()
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * root_trace)
