"""The prior stage's validation: FD-VGG16 (metrics/frechet.py) of the EMA generator's samples to the faces it trains
on, every `validate_every` steps, so a prior run has a curve against its steps (StyleGAN2-ADA reports a FID per
snapshot the same way). The reference faces are a fixed draw of the training split and the codes are fixed, so two
validations of a run differ by the weights (and the noise inputs) only."""

from __future__ import annotations

import numpy as np
import torch

from psp_hub.data import DataConfig, build_eval_dataset
from psp_hub.metrics import VGGPoolFeatures, fit_features, frechet_distance


def reference_draw(total: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint fixed draws of `count` of `total` faces: the reference set, and the other faces that measure
    the floor (benchmarks/prior_fd.py). Fewer than `count` faces: all of them, and no others."""
    order = np.random.default_rng(seed).permutation(total)
    return order[:count], order[count : 2 * count]


@torch.no_grad()
def fixed_code_samples(generator, count: int, batch_size: int, seed: int, device="cpu"):
    """`count` unconditional samples in [-1, 1], batch by batch, from the codes `seed` draws (the same every call)."""
    codes = torch.Generator().manual_seed(seed)
    for start in range(0, count, batch_size):
        z = torch.randn(min(batch_size, count - start), generator.style_dim, generator=codes)
        yield generator(z.to(device)).float().clamp(-1, 1)


class PriorValidator:
    """FD-VGG16 of `num_samples` unconditional samples to `num_samples` training faces (fitted once, here)."""

    def __init__(self, data: DataConfig, num_samples: int, device, seed: int = 0, batch_size: int = 32):
        self.net = VGGPoolFeatures().to(device)
        self.device, self.seed, self.batch_size = torch.device(device), seed, batch_size
        faces = build_eval_dataset(data, "train", num_references=0)
        reference, _ = reference_draw(len(faces), num_samples, seed)
        self.count = len(reference)
        batches = (b.to(self.device) for b in faces.face_batches(reference, batch_size))
        self.reference = fit_features(batches, self.net)

    @torch.no_grad()
    def __call__(self, generator) -> dict[str, float]:
        """{"val/fd_vgg16": the distance} for the generator as it is (the trainer passes the EMA weights)."""
        was = generator.training
        generator.eval()
        samples = fixed_code_samples(generator, self.count, self.batch_size, self.seed, self.device)
        fit = fit_features(samples, self.net)
        generator.train(was)
        return {"val/fd_vgg16": frechet_distance(self.reference, fit)}
