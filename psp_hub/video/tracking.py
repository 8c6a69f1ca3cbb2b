"""Face tracks across video frames: detections linked by box overlap, landmarks smoothed over time without lag."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Track:
    """One face followed through the clip: raw landmarks (5, 2) and boxes per frame index, then smoothed ones."""

    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    landmarks: dict[int, np.ndarray] = field(default_factory=dict)
    smoothed: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def last_frame(self) -> int:
        return max(self.boxes)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceTracker:
    """Greedy IoU linking: each detection joins the best-overlapping live track (IoU >= `min_iou`), else starts one;
    a track not seen for `max_gap` frames ends."""

    def __init__(self, min_iou: float = 0.3, max_gap: int = 5):
        self.min_iou, self.max_gap = min_iou, max_gap
        self.tracks: list[Track] = []

    def update(self, frame: int, faces) -> None:
        """Add one frame's detections (objects with `.box` and `.landmarks`)."""
        live = [t for t in self.tracks if frame - t.last_frame <= self.max_gap]
        pairs = sorted(
            (
                (box_iou(t.boxes[t.last_frame], f.box), ti, fi)
                for ti, t in enumerate(live)
                for fi, f in enumerate(faces)
            ),
            reverse=True,
        )
        used_t, used_f = set(), set()
        for iou, ti, fi in pairs:
            if iou < self.min_iou or ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            self._add(live[ti], frame, faces[fi])
        for fi, f in enumerate(faces):
            if fi not in used_f:
                track = Track()
                self._add(track, frame, f)
                self.tracks.append(track)

    @staticmethod
    def _add(track: Track, frame: int, face) -> None:
        track.boxes[frame] = np.asarray(face.box, np.float64)
        track.landmarks[frame] = np.asarray(face.landmarks, np.float64).reshape(5, 2)

    def smooth(self, sigma: float) -> list[Track]:
        """Fill every track's `smoothed` landmarks: a centred Gaussian over time (zero lag for steady motion)."""
        for t in self.tracks:
            t.smoothed = smooth_landmarks(t.landmarks, sigma)
        return self.tracks


def smooth_landmarks(landmarks: dict[int, np.ndarray], sigma: float) -> dict[int, np.ndarray]:
    """Gaussian-weighted mean of the landmarks within 3 sigma frames of each frame (only frames the track has).

    A centred filter, unlike an online exponential one, does not trail a moving face: on a constant velocity or
    scaling ramp the weighted mean is the true position (edges excepted, where the window is one-sided).
    """
    if sigma <= 0 or len(landmarks) < 2:
        return dict(landmarks)
    frames = np.array(sorted(landmarks))
    pts = np.stack([landmarks[f] for f in frames])
    radius = int(np.ceil(3 * sigma))
    out = {}
    for i, f in enumerate(frames):
        near = np.abs(frames - f) <= radius
        w = np.exp(-0.5 * ((frames[near] - f) / sigma) ** 2)
        # a symmetric window around f (so a one-sided edge does not pull the estimate): keep offsets seen both sides
        offs = frames[near] - f
        sym = np.isin(offs, -offs)
        w = w * sym
        out[int(f)] = (pts[near] * w[:, None, None]).sum(0) / w.sum()
    return out
