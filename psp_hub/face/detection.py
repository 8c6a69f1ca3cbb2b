"""Face detection with 5 landmarks: facexlib's RetinaFace (mobilenet0.25), loaded from local weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

DETECTOR_FILE = "detection_mobilenet0.25_Final.pth"
DETECTOR_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/" + DETECTOR_FILE


@dataclass
class DetectedFace:
    """One detected face: box x1,y1,x2,y2, five landmarks (eyes, nose, mouth corners) and score, in image pixels."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2) float32: left eye, right eye, nose, left mouth corner, right mouth corner
    score: float

    @property
    def area(self) -> float:
        """Box area in pixels (used to pick the largest face)."""
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    @property
    def center(self) -> np.ndarray:
        """Box centre (x, y)."""
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], dtype=np.float32)


def _offline() -> bool:
    """True when the environment forbids downloads (HF_HUB_OFFLINE / PSP_OFFLINE)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "PSP_OFFLINE"))


def resolve_detector_weights(weights_dir: str | os.PathLike | None = None) -> Path:
    """Find the RetinaFace weights in `weights_dir` (default: psp_hub.common.paths.weights_dir()); download only when online."""
    from psp_hub.common.paths import weights_dir as default_weights_dir

    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    local = folder / DETECTOR_FILE
    if local.is_file():
        return local
    cache = Path(os.environ.get("PSP_CACHE_DIR", Path.home() / ".cache" / "psp_hub")) / DETECTOR_FILE
    if cache.is_file():
        return cache
    if _offline():
        raise FileNotFoundError(
            f"face detector weights {DETECTOR_FILE} not found in {folder} (offline, so not downloading); "
            "set PSP_WEIGHTS_DIR to the folder that holds them"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(DETECTOR_URL, str(cache), progress=False)
    return cache


class FaceDetector:
    """RetinaFace mobilenet0.25 on RGB uint8 images; results sorted by score, highest first."""

    def __init__(
        self,
        weights_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        score_threshold: float = 0.9,
        nms_threshold: float = 0.4,
        max_side: int = 1600,
    ) -> None:
        from facexlib.detection.retinaface import RetinaFace

        self.device = torch.device(device)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = int(max_side)
        path = resolve_detector_weights(weights_dir)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        net = RetinaFace(network_name="mobile0.25", half=False, device=self.device)
        net.load_state_dict(state, strict=True)
        self.net = net.eval()
        self._mean = torch.tensor([104.0, 117.0, 123.0], device=self.device).view(1, 3, 1, 1)  # BGR means
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    def _priors_for(self, h: int, w: int) -> torch.Tensor:
        """RetinaFace anchors for an input size, built once per size (facexlib rebuilds them in Python each call)."""
        key = (h, w)
        if key not in self._priors:
            from facexlib.detection.retinaface_utils import PriorBox

            if len(self._priors) > 16:
                self._priors.clear()
            self._priors[key] = PriorBox(self.net.cfg, image_size=(h, w)).forward().to(self.device)
        return self._priors[key]

    @torch.inference_mode()
    def detect(self, image_rgb_uint8: np.ndarray) -> list[DetectedFace]:
        """Detect faces in an RGB uint8 (H, W, 3) image; photos larger than `max_side` are shrunk for detection only."""
        image = np.asarray(image_rgb_uint8)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        from facexlib.detection.retinaface_utils import decode, decode_landm, py_cpu_nms

        dh, dw = bgr.shape[:2]
        x = torch.from_numpy(bgr).to(self.device).permute(2, 0, 1).unsqueeze(0).float() - self._mean
        loc, conf, landms = self.net(x)
        priors = self._priors_for(dh, dw)
        variance = self.net.cfg["variance"]
        scores = conf[0, :, 1]
        keep = scores > self.score_threshold
        boxes = decode(loc[0][keep], priors[keep], variance) * torch.tensor([dw, dh] * 2, device=self.device)
        points = decode_landm(landms[0][keep], priors[keep], variance) * torch.tensor([dw, dh] * 5, device=self.device)
        boxes, points, scores = (
            boxes.float().cpu().numpy(),
            points.float().cpu().numpy(),
            scores[keep].float().cpu().numpy(),
        )
        order = scores.argsort()[::-1]
        dets = np.hstack([boxes[order], scores[order, None]]).astype(np.float32)
        kept = py_cpu_nms(dets, self.nms_threshold) if len(dets) else []
        faces = [
            DetectedFace(
                box=(dets[i, :4] / scale).astype(np.float32),
                landmarks=(points[order][i].reshape(5, 2) / scale).astype(np.float32),
                score=float(dets[i, 4]),
            )
            for i in kept
        ]
        faces.sort(key=lambda f: f.score, reverse=True)
        return faces


def largest_face(faces: list[DetectedFace]) -> DetectedFace | None:
    """The face with the largest box, or None."""
    return max(faces, key=lambda f: f.area) if faces else None


def center_face(faces: list[DetectedFace], image_shape: tuple[int, ...]) -> DetectedFace | None:
    """The face whose box centre is nearest the image centre, or None."""
    if not faces:
        return None
    mid = np.array([image_shape[1] / 2, image_shape[0] / 2], dtype=np.float32)
    return min(faces, key=lambda f: float(np.linalg.norm(f.center - mid)))
