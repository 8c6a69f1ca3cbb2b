"""FFHQ-style face alignment: a similarity transform of 5 landmarks onto the FFHQ template, with FFHQ padding."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from psp_hub.common.geometry import ffhq_template, fit_similarity, similarity_scale
from psp_hub.common.images import round_to_uint8

PADDINGS = ("blur", "reflect", "constant")
__all__ = ["PADDINGS", "AlignedFace", "align_face", "warp_to_crop"]


@dataclass
class AlignedFace:
    """An aligned face crop and the (2, 3) similarity that maps photo pixels to crop pixels."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    affine: np.ndarray  # (2, 3) float64, photo -> aligned

    @property
    def size(self) -> int:
        """Side of the square crop in pixels."""
        return int(self.image.shape[0])

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel (above 1: the face is upsampled)."""
        return similarity_scale(self.affine)


def align_face(
    image_rgb_uint8: np.ndarray,
    landmarks5: np.ndarray,
    size: int,
    padding: str = "blur",
    template: np.ndarray | None = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> AlignedFace:
    """Warp the face with these 5 landmarks onto the FFHQ template at `size` px.

    `padding`: "blur" = FFHQ-style reflect padding, blurred and faded to the median colour where the crop leaves
    the photo; "reflect" = plain mirror; "constant" = black.
    """
    template = ffhq_template(size) if template is None else template
    affine = fit_similarity(landmarks5, template, method="lmeds")  # robust to one bad landmark, as facexlib
    return AlignedFace(image=warp_to_crop(image_rgb_uint8, affine, size, padding, interpolation), affine=affine)


def _translation(dx: float, dy: float, sx: float = 1.0, sy: float = 1.0) -> np.ndarray:
    """3x3 matrix for x' = sx * x + dx, y' = sy * y + dy."""
    return np.array([[sx, 0.0, dx], [0.0, sy, dy], [0.0, 0.0, 1.0]])


def _roi_bounds(quad: np.ndarray, qsize: float, w: int, h: int) -> tuple[int, int, int, int]:
    """The photo region (x0, y0, x1, y1) that the crop quad covers, with a margin; at least 2 x 2 px."""
    x0, y0 = quad.min(0)
    x1, y1 = quad.max(0)
    margin = math.ceil(0.1 * qsize) + 4
    rx0, ry0 = max(0, math.floor(x0) - margin), max(0, math.floor(y0) - margin)
    rx1, ry1 = min(w, math.ceil(x1) + margin), min(h, math.ceil(y1) + margin)
    if rx1 - rx0 < 2 or ry1 - ry0 < 2:  # the crop lies entirely outside the photo: use the nearest strip
        rx0, rx1 = min(max(0, math.floor(x0)), w - 2), min(max(2, math.ceil(x1)), w)
        ry0, ry1 = min(max(0, math.floor(y0)), h - 2), min(max(2, math.ceil(y1)), h)
        rx0, ry0 = max(0, min(rx0, rx1 - 2)), max(0, min(ry0, ry1 - 2))
    return rx0, ry0, rx1, ry1


def _shrunk_roi(image: np.ndarray, bounds: tuple[int, int, int, int], s: float) -> tuple[np.ndarray, np.ndarray]:
    """The region, shrunk with area averaging when the crop downsamples by more than 2x, and photo -> ROI (3x3)."""
    rx0, ry0, rx1, ry1 = bounds
    roi = image[ry0:ry1, rx0:rx1]
    r = s if s < 0.5 else 1.0
    if r < 1.0:
        nw, nh = max(2, round(roi.shape[1] * r)), max(2, round(roi.shape[0] * r))
        rxs, rys = nw / roi.shape[1], nh / roi.shape[0]
        roi = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
    else:
        rxs = rys = 1.0
    # pixel centres are preserved by cv2.resize
    return roi, _translation(0.5 * rxs - 0.5 - rx0 * rxs, 0.5 * rys - 0.5 - ry0 * rys, rxs, rys)


def _edge_pads(quad_roi: np.ndarray, roi_shape: tuple, q: float, touches: tuple[bool, bool, bool, bool]) -> tuple:
    """Padding (left, top, right, bottom) in ROI px, only on sides where the crop leaves the photo."""
    m = math.ceil(0.1 * q) + 4
    rh, rw = roi_shape[:2]

    def overshoot(edge_lo: float, lo: float) -> int:
        return max(0, math.ceil(edge_lo - lo) + m) if lo < edge_lo else 0

    left, top, right, bottom = touches
    pl = overshoot(-0.5, quad_roi[:, 0].min()) if left else 0
    pt = overshoot(-0.5, quad_roi[:, 1].min()) if top else 0
    pr = overshoot(-(rw - 0.5), -quad_roi[:, 0].max()) if right else 0
    pb = overshoot(-(rh - 0.5), -quad_roi[:, 1].max()) if bottom else 0
    return pl, pt, pr, pb


def warp_to_crop(
    image: np.ndarray,
    affine: np.ndarray,
    size: int,
    padding: str = "blur",
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Sample the (size, size) crop that `affine` (photo -> crop) defines, padding FFHQ-style outside the photo.

    Works on a region of interest only (cheap on large photos) and shrinks it first with area averaging when the
    crop is much smaller than the face, so downscaling does not alias.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    affine = np.asarray(affine, dtype=np.float64)
    s = similarity_scale(affine)  # crop px per photo px
    qsize = size / s  # crop side in photo px
    inv = cv2.invertAffineTransform(affine)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64)
    quad = corners @ inv[:, :2].T + inv[:, 2]
    bounds = _roi_bounds(quad, qsize, w, h)
    roi, to_roi = _shrunk_roi(image, bounds, s)
    q = qsize * to_roi[0, 0]  # crop side in ROI px
    quad_roi = (np.c_[quad, np.ones(4)] @ to_roi.T)[:, :2]
    touches = (bounds[0] == 0, bounds[1] == 0, bounds[2] == w, bounds[3] == h)
    pl, pt, pr, pb = _edge_pads(quad_roi, roi.shape, q, touches)

    border = cv2.BORDER_CONSTANT if padding == "constant" else cv2.BORDER_REFLECT
    if (pl or pt or pr or pb) and padding != "constant":
        padded = np.pad(roi, ((pt, pb), (pl, pr), (0, 0)), mode="reflect").astype(np.float32)
        if padding == "blur":
            padded = _ffhq_fade(padded, roi, (pl, pt, pr, pb), q)
        roi = round_to_uint8(padded)
    else:
        pl = pt = 0
    full = np.vstack([affine, [0.0, 0.0, 1.0]]) @ np.linalg.inv(_translation(pl, pt) @ to_roi)
    return cv2.warpAffine(roi, full[:2], (size, size), flags=interpolation, borderMode=border, borderValue=(0, 0, 0))


def _ffhq_fade(padded: np.ndarray, original: np.ndarray, pads: tuple[int, int, int, int], q: float) -> np.ndarray:
    """Blur the reflected border and fade it to the median colour, growing with distance from the photo edge (FFHQ)."""
    pl, pt, pr, pb = pads
    ph, pw = padded.shape[:2]
    h, w = original.shape[:2]
    ramp = 0.3 * q
    x = np.arange(pw, dtype=np.float32)[None, :]
    y = np.arange(ph, dtype=np.float32)[:, None]
    mask = np.full((ph, pw), -np.inf, dtype=np.float32)
    # mask = 0 on the photo edge, 1 at `ramp` px outside it, negative inside.
    if pl:
        mask = np.maximum(mask, (pl - 0.5 - x) / max(ramp, pl))
    if pr:
        mask = np.maximum(mask, (x - (pl + w - 0.5)) / max(ramp, pr))
    if pt:
        mask = np.maximum(mask, (pt - 0.5 - y) / max(ramp, pt))
    if pb:
        mask = np.maximum(mask, (y - (pt + h - 0.5)) / max(ramp, pb))
    mask = mask[..., None]
    sigma = max(1.0, 0.02 * q)
    blurred = cv2.GaussianBlur(padded, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    padded = padded + (blurred - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    median = np.median(original.reshape(-1, original.shape[2]), axis=0).astype(np.float32)
    padded = padded + (median - padded) * np.clip(mask, 0.0, 1.0)
    return padded
