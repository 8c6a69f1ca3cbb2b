"""Eye and mouth boxes and landmark flipping for the loader: the rule lives in psp_hub.common.geometry.

The resident loader keeps each face's boxes for both orientations (`boxes_both_ways`), computed once with that
rule, so the batched GPU path needs no second (torch) copy of it.
"""

from __future__ import annotations

import numpy as np

from psp_hub.common.geometry import component_boxes, flip_landmarks

__all__ = ["boxes_both_ways"]


def boxes_both_ways(
    landmarks: np.ndarray, size: int, eye_box_iod: float = 0.6, mouth_box_width: float = 1.1
) -> np.ndarray:
    """(N, 2, 3, 4) float32: the boxes of (N, 5, 2) landmarks as they are [:, 0] and after a horizontal flip [:, 1]."""
    lm = np.asarray(landmarks, dtype=np.float32)
    return np.stack(
        [
            component_boxes(lm, size, eye_box_iod, mouth_box_width),
            component_boxes(flip_landmarks(lm, size), size, eye_box_iod, mouth_box_width),
        ],
        axis=1,
    )
