"""Never softer than the input: a band-wise blend of the restored face with the photo's own detail.

The model renders a face at its own size S (its Nyquist frequency is 0.5 cycles per crop pixel). Pasted at r output
pixels per crop pixel, everything above 0.5 / r cycles per output pixel can only come from the photo itself. The
photo keeps its own coarsest structure, the restored face gives the middle band; in each finer band (octaves,
Gaussian differences) every place keeps whichever of the two (photo resampled to the output size, restoration) has
more local detail: above the model's Nyquist that is always the photo, below it the model wins where the photo is
blurred and the photo where it is sharp.
"""

from __future__ import annotations

import cv2
import numpy as np

# A Gaussian low-pass with sigma = NYQUIST_SIGMA * r halves the amplitude at the model's Nyquist 0.5 / r:
# exp(-2 pi^2 sigma^2 f^2) = 0.5 at f = 0.5 / r  <=>  sigma = sqrt(ln 2 / 2) / (pi f) = 0.375 r.
NYQUIST_SIGMA = 0.375
# The finest band (the output's top octave, sigma 0.75 px) is always compared, even where the model is finer than the
# output: on the shared sample photos the 128 px model's own output kept only 0.5-0.75x of the Laplacian variance of
# faces 44-79 px wide at 1x, where its crop is as fine as the photo.
MIN_SIGMA = 0.75
# Bands are compared up to this many octaves below the model's Nyquist; coarser content is the restoration's.
# benchmarks/never_worse.py, minimum over the faces of the shared photos (face-box Laplacian variance vs Lanczos):
# split at the Nyquist alone 0.53 at 1x (the model's mid frequencies are smoother than a sharp photo's); 2 and 3
# octaves compared 0.896 both (two 135 px faces at 1x; what was left is fixed by PHOTO_PREFERENCE).
COMPARED_OCTAVES = 2
# In a compared band the photo's detail is kept unless the model's is this much stronger (energy ratio): real detail
# over invented detail when the two are close, and fewer switches between them (each switch loses a little energy).
# Minimum detail ratio at 1x over the shared photos: 0.896 with no preference, 0.944 with 1.25.
PHOTO_PREFERENCE = 1.25
# The photo's own structure coarser than this many octaves below the photo's Nyquist (Gaussian sigma
# NYQUIST_SIGMA x upscale x 2^k output px, i.e. 1.5 input px at k = 2) replaces the composite's, never reaching into
# the compared bands: blur, noise and JPEG of a restorable photo barely touch it, and the model's version of it
# moved the person (face shape, an open mouth painted from a smiling reference). benchmarks/whole_photo.py, 24 London
# Set people with the reference, dlib distance to the clean original (bicubic 0.04-0.25): the bundled 128 px model
# 0.221 -> 0.140 (mild 2x) ... 0.284 -> 0.260 (severe 4x), round 7's 256 px model 0.142 -> 0.081 ... 0.252 -> 0.247;
# detail vs Lanczos within 0.04 of before. On 8 people k = 1 reached bicubic's identity but left the model only the
# finest band at 2x; k = 3 gained half as much as k = 2.
PHOTO_COARSE_OCTAVES = 2


def split_sigma(ratio: float) -> float:
    """Gaussian sigma (output px) at the model's Nyquist for a face pasted at `ratio` output px per model px."""
    return max(NYQUIST_SIGMA * float(ratio), MIN_SIGMA)


def band_sigmas(ratio: float) -> list[float]:
    """Increasing blur levels: octaves from MIN_SIGMA to COMPARED_OCTAVES below the model's Nyquist."""
    coarse = split_sigma(ratio) * 2.0**COMPARED_OCTAVES
    sigmas = [MIN_SIGMA]
    while sigmas[-1] * 2 < coarse:
        sigmas.append(sigmas[-1] * 2)
    return [*sigmas, coarse]


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _energy(band: np.ndarray, sigma: float) -> np.ndarray:
    luma = band[..., 0] * 0.299 + band[..., 1] * 0.587 + band[..., 2] * 0.114
    return _blur(luma * luma, 2 * sigma)


def photo_coarse_sigma(ratio: float, upscale: float) -> float:
    """Sigma (output px) above which the photo's own structure is kept: PHOTO_COARSE_OCTAVES below its Nyquist,
    at least the coarsest compared band."""
    return max(NYQUIST_SIGMA * float(upscale) * 2.0**PHOTO_COARSE_OCTAVES, band_sigmas(ratio)[-1])


def keep_detail(restored: np.ndarray, photo: np.ndarray, ratio: float, upscale: float) -> np.ndarray:
    """The photo's coarse structure, the restoration's middle band, per finer band the stronger of the two;
    float32 (h, w, 3) in and out.

    `restored` is the restored face warped to the output; `photo` the input resampled to the output (`upscale` output
    px per photo px), same region; `ratio` output px per model px.
    """
    out = np.zeros_like(restored)
    fine_r, fine_p, prev = restored, photo, 0.0
    for sigma in band_sigmas(ratio):
        low_r, low_p = _blur(restored, sigma), _blur(photo, sigma)
        band_r, band_p = fine_r - low_r, fine_p - low_p
        stronger = PHOTO_PREFERENCE * _energy(band_p, sigma) >= _energy(band_r, sigma)
        use_photo = _blur(stronger.astype(np.float32), max(sigma, prev))
        out += band_r + use_photo[..., None] * (band_p - band_r)
        fine_r, fine_p, prev = low_r, low_p, sigma
    out += fine_r
    coarse = photo_coarse_sigma(ratio, upscale)
    return out - _blur(out, coarse) + _blur(photo, coarse)
