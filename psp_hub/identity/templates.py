"""Fixed 5-point face templates (FFHQ, ArcFace) and the similarity transform between them."""

from __future__ import annotations

import numpy as np

# FFHQ 5-point template at 512 px (left eye, right eye, nose, left/right mouth corner), as in GFPGAN / facexlib.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# ArcFace (insightface) 5-point template for 112x112 crops, same landmark order.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def ffhq_template(size: int) -> np.ndarray:
    """The FFHQ template scaled from 512 px to a `size` px crop, float64 (5, 2)."""
    return FFHQ_TEMPLATE_512 * (float(size) / 512.0)


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping src points onto dst, as a (2, 3) matrix."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / s_c.var(0).sum()
    shift = mu_d - scale * rot @ mu_s
    return np.concatenate([scale * rot, shift[:, None]], axis=1)


def ffhq_to_arcface_matrix(size: int, out_size: int = 112) -> np.ndarray:
    """The fixed (2, 3) pixel-space similarity taking an FFHQ-aligned `size` px crop to the ArcFace `out_size` crop."""
    return umeyama_similarity(ffhq_template(size), ARCFACE_TEMPLATE_112 * (out_size / 112.0))
