"""Identity embeddings of FFHQ-aligned faces for the reference check and selection (cosine = dot product)."""

from __future__ import annotations

import threading

import numpy as np
import torch

from psp_hub.common.images import image_to_tensor, resize_to
from psp_hub.identity import IdentityEncoder

# The gate's thresholds (PipelineConfig.identity_*) were measured on the 128 px corpus' crops
# (benchmarks/identity_gate.py), so larger crops are shrunk to it first: the same photo then embeds the same with the
# 128 px and the 256 px model. Embedded at 256 instead, a group photo's own face scored just under the 0.53 threshold.
CALIBRATION_SIZE = 128


class IdentityScorer:
    """Embeds aligned RGB uint8 faces (N, S, S, 3) to L2-normalised vectors with the project's identity network,
    crops above 128 px shrunk to 128 first (the size its thresholds were calibrated at)."""

    def __init__(self, encoder=None, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.backend = "psp_hub.identity.IdentityEncoder"
        self.encoder = encoder if encoder is not None else IdentityEncoder.from_onnx().eval().to(self.device)
        self._lock = threading.Lock()

    @torch.inference_mode()
    def embed(self, faces: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(N, S, S, 3) uint8 FFHQ-aligned faces -> (N, D) float32 unit vectors."""
        faces = (
            np.stack([np.asarray(f, dtype=np.uint8) for f in faces]) if isinstance(faces, list) else np.asarray(faces)
        )
        if len(faces) == 0:
            return np.zeros((0, 0), np.float32)
        x = image_to_tensor(faces, self.device)
        if x.shape[-1] > CALIBRATION_SIZE:
            x = resize_to(x, CALIBRATION_SIZE)
        with self._lock:
            emb = self.encoder(x).float()
        emb = torch.nn.functional.normalize(emb, dim=1)
        return emb.cpu().numpy().astype(np.float32)
