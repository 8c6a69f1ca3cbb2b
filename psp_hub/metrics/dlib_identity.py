"""dlib ResNet face-descriptor distance on FFHQ-aligned crops (the usual "< 0.6 is the same person" metric)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..common.paths import weights_dir

RECOGNITION_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_FILENAME = "shape_predictor_5_face_landmarks.dat"
SAME_PERSON_THRESHOLD = 0.6

# dlib's frontal-detector box on FFHQ-aligned faces, as fractions of the crop side (x1, y1, x2, y2): the mean box
# found by dlib.get_frontal_face_detector() on 118 CelebA crops of data/faces128 upscaled to 256 px, std ~0.04.
FFHQ_DLIB_BOX = (0.2073, 0.2998, 0.7834, 0.8786)


@dataclass
class DlibIdentityConfig:
    """How crops are prepared: upscale (bicubic) so the side is at least `min_size`; fixed box or detector first."""

    min_size: int = 200
    use_detector: bool = False
    num_jitters: int = 0


class DlibIdentity:
    """128-D dlib descriptors of FFHQ-aligned RGB uint8 crops and Euclidean distances between pairs.

    Aligned crops skip detection by default: the face rectangle is the fixed FFHQ_DLIB_BOX (dlib's detector box
    averaged over the corpus), which also works on blurry outputs where the HOG detector fails; the 5-point shape
    predictor then places landmarks in it and dlib aligns its 150 px chip. With use_detector=True the largest
    detection is used when there is one. Measured on the corpus, the two give the same distances.
    """

    def __init__(self, weights: str | Path | None = None, config: DlibIdentityConfig | None = None) -> None:
        import dlib  # dlib-bin, imported on use

        folder = Path(weights) if weights is not None else weights_dir()
        self.config = config or DlibIdentityConfig()
        self._shape = dlib.shape_predictor(str(folder / SHAPE_FILENAME))
        self._recog = dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILENAME))
        self._detector = dlib.get_frontal_face_detector() if self.config.use_detector else None
        self._dlib = dlib

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """Validate an (S, S, 3) uint8 RGB crop and upscale it to at least min_size."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
        side = min(img.shape[:2])
        if side < self.config.min_size:
            scale = self.config.min_size / side
            img = cv2.resize(
                img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_CUBIC
            )
        return np.ascontiguousarray(img)

    def _rect(self, img: np.ndarray):
        h, w = img.shape[:2]
        x1, y1, x2, y2 = FFHQ_DLIB_BOX
        rect = self._dlib.rectangle(round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h))
        if self._detector is not None:
            found = self._detector(img, 0)
            if len(found):
                rect = max(found, key=lambda r: r.area())
        return rect

    def descriptor(self, image: np.ndarray) -> np.ndarray:
        """The (128,) float64 descriptor of one FFHQ-aligned RGB uint8 crop."""
        img = self._prepare(image)
        shape = self._shape(img, self._rect(img))
        return np.asarray(self._recog.compute_face_descriptor(img, shape, self.config.num_jitters), dtype=np.float64)

    def descriptors(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) descriptors of a list of crops."""
        return np.stack([self.descriptor(im) for im in images]) if len(images) else np.zeros((0, 128))

    def distance(self, pred: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) Euclidean descriptor distances between paired crops; below 0.6 dlib calls it the same person."""
        if len(pred) != len(target):
            raise ValueError(f"got {len(pred)} predictions and {len(target)} targets")
        return np.linalg.norm(self.descriptors(pred) - self.descriptors(target), axis=1)
