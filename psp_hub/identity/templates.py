"""The fixed similarity from an FFHQ-aligned crop to the ArcFace 112 crop (templates in psp_hub.common.geometry)."""

from __future__ import annotations

import numpy as np

from psp_hub.common.geometry import ARCFACE_SIZE, ARCFACE_TEMPLATE_112, ffhq_template, fit_similarity

__all__ = ["ffhq_to_arcface_matrix"]


def ffhq_to_arcface_matrix(size: int, out_size: int = ARCFACE_SIZE) -> np.ndarray:
    """The fixed (2, 3) pixel-space similarity taking an FFHQ-aligned `size` px crop to the ArcFace `out_size` crop."""
    return fit_similarity(ffhq_template(size), ARCFACE_TEMPLATE_112 * (out_size / ARCFACE_SIZE))
