"""Photo-folder mode: detect the face in an ordinary photo and align it onto the FFHQ template (psp_hub.face)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from ..sharpness import sharp_px
from .metadata import InputRecord
from .scan import ScanResult, file_stamp

SHARP_MEASURE_PX = 512
"""Crops smaller than this are measured on a 512 px warp of the same face, so a 256 px face can show 256+."""


def cached_crop_name(file_name: str, image_format: str) -> str:
    """Stable cache file name of the aligned crop of one photo."""
    return hashlib.sha1(file_name.encode()).hexdigest()[:20] + "." + image_format


def encode_image(rgb: np.ndarray, image_format: str) -> bytes:
    """PNG (lossless) or WebP q95 bytes of an RGB uint8 image."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_WEBP_QUALITY, 95] if image_format == "webp" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, buf = cv2.imencode("." + image_format, bgr, params)
    if not ok:
        raise RuntimeError(f"could not encode {image_format}")
    return buf.tobytes()


class PhotoAligner:
    """Detect faces, keep the largest, align it at `size` px with FFHQ blurred padding, cache the crop as a file."""

    def __init__(
        self,
        input_dir: Path,
        cache_dir: Path,
        size: int,
        threshold: float,
        min_native_px: int,
        image_format: str,
        weights_dir: str | None,
    ):
        from psp_hub.face.detection import FaceDetector

        self.input_dir, self.cache_dir = Path(input_dir), Path(cache_dir)
        self.size, self.min_native_px, self.image_format = size, min_native_px, image_format
        self.detector = FaceDetector(weights_dir=weights_dir, device="cpu", score_threshold=threshold)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, record: InputRecord) -> ScanResult:
        """Check one photo; corrupt files, photos without a face and tiny faces come back not ok."""
        from psp_hub.face.alignment import align_face
        from psp_hub.face.detection import largest_face

        path = self.input_dir / record.file_name
        stamp = file_stamp(path)
        if not stamp:
            return ScanResult(record.file_name, False, "missing")
        bgr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            return ScanResult(record.file_name, False, "corrupt", stamp=stamp)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        faces = self.detector.detect(rgb)
        face = largest_face(faces)
        if face is None:
            return ScanResult(record.file_name, False, "no_face", faces_in_photo=0, stamp=stamp)
        aligned = align_face(rgb, face.landmarks, self.size, padding="blur")
        native = round(self.size / max(aligned.scale, 1e-9))
        if native < self.min_native_px:
            return ScanResult(
                record.file_name, False, "tiny_face", native_px=native, faces_in_photo=len(faces), stamp=stamp
            )
        sharp = measure_sharpness(rgb, aligned, native)
        lm = np.c_[face.landmarks, np.ones(5)] @ np.asarray(aligned.affine, dtype=np.float64).T
        data = encode_image(aligned.image, self.image_format)
        name = cached_crop_name(record.file_name, self.image_format)
        tmp = self.cache_dir / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.cache_dir / name)
        return ScanResult(
            record.file_name,
            True,
            size=self.size,
            sha1=hashlib.sha1(data).hexdigest(),
            landmarks=[[round(float(x), 3), round(float(y), 3)] for x, y in lm],
            native_px=native,
            sharp_px=sharp,
            det_score=round(float(face.score), 4),
            faces_in_photo=len(faces),
            cached_image=name,
            stamp=stamp,
        )


def measure_sharpness(rgb: np.ndarray, aligned, native_px: int) -> int:
    """`sharp_px` of the face, measured on a crop of at least SHARP_MEASURE_PX and capped by its source pixels."""
    from psp_hub.face.alignment import warp_to_crop

    size = aligned.size
    if size >= SHARP_MEASURE_PX:
        crop = aligned.image
    else:  # the same crop, warped larger: a measure cannot exceed the crop it is given
        k = SHARP_MEASURE_PX / size
        crop = warp_to_crop(rgb, aligned.affine * k, SHARP_MEASURE_PX, padding="blur")
    return int(min(sharp_px(crop), native_px))
