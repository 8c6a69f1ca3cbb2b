"""Training PSP-GAN and its StyleGAN2 prior with Accelerate (CPU, one GPU or many)."""

from .config import LossWeights, OptimConfig, TrainConfig
from .trainer import RunResult, train

__all__ = ["LossWeights", "OptimConfig", "RunResult", "TrainConfig", "train"]
