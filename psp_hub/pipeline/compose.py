"""Put restored faces back into the resampled photo: face mask, photo colours, the photo's own fine detail, fidelity."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from psp_hub.common.geometry import similarity_scale
from psp_hub.face.paste import face_mask, face_region, output_pixels_per_crop_pixel, paste_face
from psp_hub.pipeline.background import output_size
from psp_hub.pipeline.colour import match_colour
from psp_hub.pipeline.config import PipelineConfig
from psp_hub.pipeline.detail import keep_detail
from psp_hub.pipeline.errors import PipelineError
from psp_hub.pipeline.result import RestoredFace


def aligned_landmarks(face: RestoredFace) -> np.ndarray:
    """The face's 5 landmarks in its aligned crop."""
    a = np.asarray(face.affine, dtype=np.float64)
    return np.asarray(face.landmarks, dtype=np.float64) @ a[:, :2].T + a[:, 2]


def faithful_colour(face: RestoredFace, feather: float) -> np.ndarray:
    """The model's restoration with the input face's colour statistics inside the face mask."""
    mask = face_mask(face.restored.shape[0], aligned_landmarks(face), feather)
    return match_colour(face.restored, face.aligned_input, mask)


def input_pixels_per_crop_pixel(face: RestoredFace) -> float:
    """How many photo pixels one model pixel stands for (above 1: the photo holds detail the model cannot render)."""
    return 1.0 / max(similarity_scale(face.affine), 1e-8)


def flag_large_faces(faces: list[RestoredFace], cfg: PipelineConfig, size: int, warnings: list[str]) -> None:
    """Warn about faces far larger than the model's size and, with large_faces="keep", leave them unpasted."""
    for f in faces:
        ratio = input_pixels_per_crop_pixel(f)
        if ratio <= cfg.large_face_ratio:
            continue
        f.large = True
        span = ratio * size
        if cfg.large_faces == "keep":
            f.pasted = False
            warnings.append(
                f"face {f.index} spans about {span:.0f} px, {ratio:.1f}x the model's {size} px: left "
                "untouched (large_faces='keep')"
            )
        else:
            warnings.append(
                f"face {f.index} spans about {span:.0f} px, {ratio:.1f}x the model's {size} px: the model "
                "restored its coarse shape only, its fine detail is the photo's own (large_faces='keep' "
                "leaves such faces untouched)"
            )


def target_scale(shape: tuple[int, ...], cfg: PipelineConfig, warnings: list[str]) -> float:
    """The upscale factor, lowered (with a warning) so the output stays under cfg.max_output_pixels."""
    h, w = shape[:2]
    scale = float(cfg.upscale)
    if h * w * scale * scale > cfg.max_output_pixels:
        scale = math.sqrt(cfg.max_output_pixels / (h * w))
        warnings.append(
            f"upscale lowered from {cfg.upscale:g}x to {scale:.2f}x to stay under "
            f"{cfg.max_output_pixels / 1e6:g} megapixels"
        )
    return scale


def compose_photo(
    image: np.ndarray, faces: list[RestoredFace], cfg: PipelineConfig, upscaler: Callable, scale: float
) -> np.ndarray:
    """The photo resampled by `scale` with every pasted face; each face also gets its full-size output crop."""
    h, w = image.shape[:2]
    oh, ow = output_size(image.shape, scale)
    background = upscaler(image, (oh, ow))
    if background.shape[:2] != (oh, ow):
        raise PipelineError(f"the background upscaler returned {background.shape[:2]}, expected {(oh, ow)}")
    canvas = np.array(background, dtype=np.uint8, copy=True)
    sxy = (ow / w, oh / h)
    for f in faces:
        if f.pasted:
            paste_restored(canvas, f, sxy, cfg)
    for f in faces:
        f.region = face_region(f.affine, f.restored.shape[0], canvas.shape, sxy)
        if f.region is not None:
            x0, y0, x1, y1 = f.region
            f.output = canvas[y0:y1, x0:x1].copy()
    return canvas


def paste_restored(canvas: np.ndarray, face: RestoredFace, scale: tuple[float, float], cfg: PipelineConfig) -> None:
    """Paste one face in place: inside its feathered face mask, the photo's coarse structure, the restoration's middle
    band, fine detail kept from the photo where it has more, and blended toward the photo by cfg.fidelity."""
    size = face.restored.shape[0]
    ratio = output_pixels_per_crop_pixel(face.affine, scale)
    mask = face_mask(size, aligned_landmarks(face), cfg.feather)
    paste_face(
        canvas,
        face.restored,
        face.affine,
        scale,
        mask=mask,
        opacity=1.0 - float(cfg.fidelity),
        blend=lambda warped, photo: keep_detail(warped, photo, ratio, math.sqrt(scale[0] * scale[1])),
    )
