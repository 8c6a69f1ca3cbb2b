"""A cheap head-pose descriptor from the 5 landmarks in aligned coordinates, for matching references to the input."""

from __future__ import annotations

import numpy as np

from psp_hub.common.geometry import ffhq_template


def pose_descriptor(landmarks5: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    """(yaw, pitch) proxies, 0 for a frontal FFHQ face: nose offset from the face midline / eye distance, and
    the nose's height between eyes and mouth relative to the template's."""
    pts = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    if affine is not None:
        pts = pts @ np.asarray(affine, dtype=np.float64)[:, :2].T + np.asarray(affine, dtype=np.float64)[:, 2]
    return _raw(pts) - _raw(ffhq_template(512))


def _raw(pts: np.ndarray) -> np.ndarray:
    eyes, nose, mouth = (pts[0] + pts[1]) / 2, pts[2], (pts[3] + pts[4]) / 2
    iod = max(np.linalg.norm(pts[1] - pts[0]), 1e-6)
    axis = mouth - eyes
    length = max(np.linalg.norm(axis), 1e-6)
    unit = axis / length
    normal = np.array([-unit[1], unit[0]])
    yaw = float(np.dot(nose - (eyes + mouth) / 2, normal) / iod)
    pitch = float(np.dot(nose - eyes, unit) / length)
    return np.array([yaw, pitch])


def pose_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two pose descriptors."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
